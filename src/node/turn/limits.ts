/** What a TurnServer is told: where to listen and relay, its secret, and its limits. */

export interface TurnLimits {
  /** Lifetime of an allocation that asks for less, or for nothing (RFC 8656: 600 s). */
  defaultLifetimeS: number;
  /** The most an allocation may ask for. */
  maxLifetimeS: number;
  /** How long a nonce is good for before a request gets 438 Stale Nonce. */
  nonceLifetimeS: number;
  /** Allocations one user (node ID) may hold at once (486 beyond). */
  allocationsPerUser: number;
  /** Allocations in all (508 beyond). */
  allocations: number;
  /**
   * Allocations, reservations and Allocates in progress one source (IPv4 address, IPv6 /64)
   * may hold, whatever usernames it uses (508 beyond), so one address cannot take the cap.
   */
  allocationsPerSource: number;
  /**
   * Answers per second to one source's requests that carry no valid credentials (Binding, the
   * 401/438 challenge, errors before authentication); beyond, requests are dropped unanswered.
   */
  unauthenticatedPerSecondPerSource: number;
  /** How many such answers one source may get at once, before the rate applies. */
  unauthenticatedBurstPerSource: number;
  /** Sources whose answer rate is tracked at once; the rest share one bucket. */
  unauthenticatedSources: number;
  /** Bytes per second one user may relay, both ways together (beyond, datagrams are dropped). */
  bytesPerSecondPerUser: number;
  /** A TCP/TLS client connection without an allocation is closed after this long idle (ms). */
  streamIdleMs: number;
  permissionsPerAllocation: number;
  channelsPerAllocation: number;
}

export const DEFAULT_TURN_LIMITS: TurnLimits = {
  defaultLifetimeS: 600,
  maxLifetimeS: 3600,
  nonceLifetimeS: 600,
  allocationsPerUser: 50,
  allocations: 10_000,
  allocationsPerSource: 500,
  unauthenticatedPerSecondPerSource: 50,
  unauthenticatedBurstPerSource: 100,
  unauthenticatedSources: 16_384,
  bytesPerSecondPerUser: 10_000_000,
  streamIdleMs: 30_000,
  permissionsPerAllocation: 64,
  channelsPerAllocation: 64,
};

export interface TurnServerOptions {
  /** Where the STUN/TURN socket listens. Port 0 picks a free one. */
  listen: { host: string; port: number };
  /** The address relay sockets bind to, and the relayed address allocations report. */
  relayIp: string;
  secret: string;
  realm?: string;
  /** Relay to loopback, private and link-local peers too (tests on one machine). */
  allowPrivatePeers?: boolean;
  /** Private networks relayed to even without allowPrivatePeers (federated gateways' relays). */
  peerNetworks?: readonly string[];
  /**
   * The gateway's own WebRTC endpoints: relayed to even on a private address (a browser whose
   * UDP is blocked reaches its gateway through this relay). Only these ports of those hosts.
   */
  ownEndpoints?: { address: string; port: number }[];
  /** Accept channels 0x5000–0x7FFF as RFC 5766 did (old clients); RFC 8656 says 400. */
  rfc5766ChannelNumbers?: boolean;
  limits?: Partial<TurnLimits>;
  /** `dgram`: Node's socket for STUN/TURN even where batched I/O is built (udp-listener.ts). */
  udpIo?: 'batched' | 'dgram';
  /** The clock, in ms (tests move it). */
  now?: () => number;
}
