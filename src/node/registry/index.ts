/** The gateway's node registry (DESIGN §5): one contract, two backends. */
export { MemoryRegistry } from './memory-registry.ts';
export type { PushSubscriptionData, Registration, Registry } from './registry.ts';
export { REGISTRY_SCHEMA_VERSION, SqliteRegistry } from './sqlite-registry.ts';
