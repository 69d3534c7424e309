/** The gateway's node registry (DESIGN §5): one contract, three backends. */
export { MemoryRegistry } from './memory-registry.ts';
export {
  DEFAULT_PRESENCE_TTL_MS,
  DEFAULT_REDIS_PREFIX,
  RedisRegistry,
  type RedisRegistryOptions,
} from './redis-registry.ts';
export type { PushSubscriptionData, Registration, Registry } from './registry.ts';
export { RegistryUnavailableError, registrationOf } from './registry.ts';
export { REGISTRY_SCHEMA_VERSION, SqliteRegistry } from './sqlite-registry.ts';
