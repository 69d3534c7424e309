/**
 * A gateway that federates with the gateways heard on its LAN (docs/design.md §10): a
 * standalone `rtcmesh gateway --announce --federate`, and the local gateway of `rtcmesh app`.
 */
import type { NodeId } from '../../core/identity/index.ts';
import type { Logger } from '../../core/node/logger.ts';
import { type Federation, parsePeerUrl } from '../gateway/federation/federation.ts';
import type { LanDiscovery } from './lan-discovery.ts';

/**
 * Links to the gateways heard on the LAN, each pinned to the ID its signed announcement proved
 * (the link then checks that gateway's signed record), and only while they are heard: one that
 * said bye, went unheard, moved to another URL or was pushed out of the LAN table (a flood of
 * signed announcements from strangers, whose IDs are free) is no longer linked to again:
 * strangers cannot fill the federation's 64 peers (after which this gateway would refuse to
 * link to honest gateways it hears, and redial dead URLs forever). `configured` (--peer) ones
 * are not touched. Returns a function that stops following the LAN.
 */
export function federateWithLan(
  lan: LanDiscovery,
  federation: Federation,
  self: NodeId,
  configured: readonly string[],
  log: Pick<Logger, 'warn'>,
): () => void {
  const linked = new Map<NodeId, string>();
  const wsUrlOf = (url: string) => {
    try {
      return parsePeerUrl(url).wsUrl;
    } catch {
      return undefined;
    }
  };
  const given = new Set(configured.map(wsUrlOf));
  const reconcile = () => {
    const heard = new Map(
      lan
        .gateways()
        .filter((g) => !given.has(wsUrlOf(g.url)))
        .map((g) => [g.id, g.url]),
    );
    for (const [id, url] of linked) {
      if (heard.get(id) === url) continue;
      linked.delete(id);
      federation.removePeer(url);
    }
    for (const [id, url] of heard) {
      if (id === self || linked.get(id) === url) continue;
      try {
        federation.addPeer(`${url}#${id}`);
        linked.set(id, url);
      } catch (err) {
        log.warn(`cannot federate with ${id} at ${url}: ${String(err)}`);
      }
    }
  };
  const unsubscribe = [lan.on('gateway', reconcile), lan.on('gone', reconcile)];
  reconcile();
  return () => {
    for (const off of unsubscribe) off();
  };
}
