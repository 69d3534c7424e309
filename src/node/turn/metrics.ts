/** The TURN relay's Prometheus metrics, read from its own tallies when scraped. */
import { countedFrom, gaugeFrom, type MetricsRegistry } from '../gateway/metrics.ts';
import type { TurnServer } from './server.ts';

export function registerTurnMetrics(registry: MetricsRegistry, turn: TurnServer): void {
  gaugeFrom(
    registry,
    'rtcmesh_turn_allocations',
    'TURN allocations now.',
    () => turn.allocationCount,
  );
  const counted = (name: string, help: string, read: () => number) =>
    countedFrom(registry, name, help, read);
  counted(
    'rtcmesh_turn_allocations_total',
    'TURN allocations made.',
    () => turn.stats.allocationsTotal,
  );
  counted(
    'rtcmesh_turn_relayed_bytes_to_peer_total',
    'Bytes relayed from clients to peers.',
    () => turn.stats.bytesToPeer,
  );
  counted(
    'rtcmesh_turn_relayed_bytes_to_client_total',
    'Bytes relayed from peers to clients.',
    () => turn.stats.bytesToClient,
  );
  counted('rtcmesh_turn_requests_total', 'STUN/TURN requests.', () => turn.stats.requests);
  counted(
    'rtcmesh_turn_error_responses_total',
    'STUN/TURN requests answered with an error (including 401 challenges).',
    () => turn.stats.errorResponses,
  );
  counted('rtcmesh_turn_dropped_total', 'Datagrams the TURN server dropped, for any reason.', () =>
    Object.values(turn.stats.dropped).reduce((a, b) => a + b, 0),
  );
}
