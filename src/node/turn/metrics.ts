/** The TURN relay's Prometheus metrics, read from its own tallies when scraped. */
import { Gauge } from 'prom-client';
import {
  countedByLabel,
  countedFrom,
  gaugeFrom,
  type MetricsRegistry,
} from '../gateway/metrics.ts';
import { CLIENT_TRANSPORTS } from './client.ts';
import type { TransportStats } from './outbox.ts';
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
  counted(
    'rtcmesh_turn_relayed_within_server_total',
    'Datagrams from one allocation to another on this server, handed over without a socket.',
    () => turn.stats.packetsWithinServer,
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
  // One series per transport between client and server (udp, tcp, tls).
  const byTransport = (name: string, help: string, read: (stats: TransportStats) => number) =>
    countedByLabel(registry, name, help, 'transport', CLIENT_TRANSPORTS, (transport) =>
      read(turn.stats.byTransport[transport]),
    );
  byTransport(
    'rtcmesh_turn_transport_relayed_bytes_total',
    'Bytes relayed both ways, by the transport between client and server (udp, tcp, tls).',
    (t) => t.bytesToPeer + t.bytesToClient,
  );
  byTransport(
    'rtcmesh_turn_transport_allocations_total',
    'TURN allocations made, by the transport between client and server.',
    (t) => t.allocationsTotal,
  );
  byTransport(
    'rtcmesh_turn_transport_connections_total',
    'TURN client connections accepted over TCP and TLS (udp has none: always 0).',
    (t) => t.connectionsTotal,
  );
  new Gauge({
    name: 'rtcmesh_turn_transport_connections',
    help: 'TURN client connections open now over TCP and TLS.',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      for (const transport of ['tcp', 'tls'] as const)
        this.set({ transport }, turn.stats.byTransport[transport].connections);
    },
  });
}
