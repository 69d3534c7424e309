/**
 * The cluster's gateways as the node last learned them (cluster mode), kept so that a node
 * whose own gateway is down can still reach the others: the app opened from its cache after
 * a push, and the service worker declining a call.
 */
import { openNodeDb } from './db.ts';

/** The gateways kept, or none; storage trouble only costs failover, never the app. */
export async function loadKnownGateways(): Promise<string[]> {
  return openNodeDb()
    .then((db) => db.get('gateways', 'cluster'))
    .then((urls) => urls ?? [])
    .catch(() => []);
}

export async function saveKnownGateways(urls: readonly string[]): Promise<void> {
  await openNodeDb()
    .then((db) => db.put('gateways', [...urls], 'cluster'))
    .catch((err: unknown) => console.warn('rtcmesh: could not keep the gateway list', err));
}
