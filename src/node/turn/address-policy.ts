/**
 * Which peers a relay may send to (RFC 8656 §21.2.3: a TURN server must not become a way into
 * the networks behind it). Loopback, private and link-local peers are refused unless the
 * operator allows them (tests on one machine do); addresses nobody can be are always refused.
 */
import { BlockList } from 'node:net';
import { formatIp, parseIp, unmapIpv4 } from '../stun/ip.ts';

export type PeerAddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unspecified'
  | 'multicast'
  | 'reserved';

function inV4(b: Uint8Array, prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if (((b[byte] ?? 0) & mask) !== ((prefix[byte] ?? 0) & mask)) return false;
  }
  return true;
}

function classifyV4(b: Uint8Array): PeerAddressClass {
  if (inV4(b, [0], 8)) return 'unspecified';
  if (inV4(b, [127], 8)) return 'loopback';
  if (inV4(b, [10], 8) || inV4(b, [172, 16], 12) || inV4(b, [192, 168], 16)) return 'private';
  if (inV4(b, [100, 64], 10)) return 'private'; // carrier-grade NAT (RFC 6598)
  if (inV4(b, [169, 254], 16)) return 'link-local';
  if (inV4(b, [224], 4)) return 'multicast';
  if (inV4(b, [240], 4)) return 'reserved'; // includes 255.255.255.255
  return 'public';
}

export function classifyPeerAddress(address: string): PeerAddressClass {
  const b = parseIp(address);
  if (!b) return 'reserved';
  if (b.length === 4) return classifyV4(b);
  const first = b[0] ?? 0;
  const second = b[1] ?? 0;
  const zeroTo = (n: number) => b.subarray(0, n).every((x) => x === 0);
  if (zeroTo(10) && b[10] === 0xff && b[11] === 0xff) return classifyV4(b.subarray(12)); // ::ffff:v4
  if (
    first === 0x00 &&
    second === 0x64 &&
    b[2] === 0xff &&
    b[3] === 0x9b &&
    b.subarray(4, 12).every((x) => x === 0)
  )
    return classifyV4(b.subarray(12)); // NAT64 64:ff9b::/96
  if (zeroTo(16)) return 'unspecified';
  if (zeroTo(15) && b[15] === 1) return 'loopback';
  if (zeroTo(12)) return 'reserved'; // IPv4-compatible, deprecated
  if ((first & 0xfe) === 0xfc) return 'private'; // unique local fc00::/7
  if (first === 0xfe && (second & 0xc0) === 0x80) return 'link-local'; // fe80::/10
  if (first === 0xfe && (second & 0xc0) === 0xc0) return 'private'; // site-local fec0::/10
  if (first === 0xff) return 'multicast';
  return 'public';
}

/**
 * Private networks a relay may reach although private peers are refused: the backbone where
 * federated gateways' relays live (docs/design.md "Relays across hops"). Only private and
 * link-local ranges may be named; loopback, multicast and the like never.
 */
export class PeerNetworks {
  private readonly list = new BlockList();
  readonly cidrs: string[] = [];

  constructor(cidrs: readonly string[] = []) {
    for (const cidr of cidrs) this.add(cidr);
  }

  /** Adds `ADDRESS/PREFIX`; throws a clear error for anything else. */
  add(cidr: string): void {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
    const address = m?.[1] ?? '';
    const prefix = Number(m?.[2]);
    const family = familyOf(address);
    if (!m || !parseIp(address) || prefix > (family === 'ipv4' ? 32 : 128))
      throw new Error(
        `a relay peer network must be ADDRESS/PREFIX such as 10.9.0.0/24, not "${cidr}"`,
      );
    const c = classifyPeerAddress(address);
    if (c !== 'private' && c !== 'link-local')
      throw new Error(`relay peer network ${cidr} is ${c}: only private ranges may be named`);
    if (prefix < (family === 'ipv4' ? 8 : 16))
      throw new Error(`relay peer network ${cidr} is wider than a /${family === 'ipv4' ? 8 : 16}`);
    this.list.addSubnet(address, prefix, family);
    this.cidrs.push(cidr.trim());
  }

  has(address: string): boolean {
    if (this.cidrs.length === 0) return false;
    const ip = normalIp(address);
    return this.list.check(ip, familyOf(ip));
  }
}

/** Whether a relay may send to this peer. */
export function peerAllowed(
  address: string,
  allowPrivate: boolean,
  networks?: PeerNetworks,
): boolean {
  const c = classifyPeerAddress(address);
  if (c === 'public') return true;
  if (allowPrivate && (c === 'loopback' || c === 'private' || c === 'link-local')) return true;
  return (c === 'private' || c === 'link-local') && networks !== undefined && networks.has(address);
}

export const familyOf = (address: string): 'ipv4' | 'ipv6' =>
  address.includes(':') ? 'ipv6' : 'ipv4';

/** One spelling per address, so permissions match however a socket formats it. */
export function normalIp(address: string): string {
  const bytes = parseIp(unmapIpv4(address));
  return bytes ? formatIp(bytes) : address;
}

const REACHABLE_MEMO_MAX = 4096;

/**
 * The peers one server may relay to: those `peerAllowed` lets through, and the gateway's own
 * WebRTC endpoints (exact address and port) even on a private or loopback address. A browser
 * whose UDP is blocked reaches its gateway's WebRTC endpoint only through this relay over TLS,
 * and a gateway behind a cloud NAT has a private address; other ports of that host stay shut.
 */
export class PeerPolicy {
  private readonly endpoints: ReadonlySet<string>;
  private readonly endpointHosts: ReadonlySet<string>;
  private readonly reachable = new Map<string, boolean>();

  constructor(
    private readonly allowPrivate: boolean,
    ownEndpoints: readonly { address: string; port: number }[] = [],
    /** Private networks relayed to anyway: federated gateways' backbone (--turn-peer-net). */
    private readonly networks?: PeerNetworks,
  ) {
    this.endpoints = new Set(ownEndpoints.map((e) => `${normalIp(e.address)}|${e.port}`));
    this.endpointHosts = new Set(ownEndpoints.map((e) => normalIp(e.address)));
  }

  /** Whether a permission (an IP, any port) may be installed for this peer. */
  mayPermit(address: string): boolean {
    return (
      peerAllowed(address, this.allowPrivate, this.networks) ||
      this.endpointHosts.has(normalIp(address))
    );
  }

  /** Whether a datagram may go to this peer (`address` as normalIp spells it). */
  mayReach(peer: { address: string; port: number }): boolean {
    if (!this.endpointHosts.has(peer.address)) return true; // its permission was checked
    // Asked per relayed datagram, and a peer on this host is the usual case (another
    // allocation's relay address): parsing the address each time was a tenth of the relay's
    // CPU. The answer never changes; the memo is bounded (peers are chosen by clients).
    const key = `${peer.address}|${peer.port}`;
    let ok = this.reachable.get(key);
    if (ok === undefined) {
      ok = peerAllowed(peer.address, this.allowPrivate, this.networks) || this.endpoints.has(key);
      if (this.reachable.size >= REACHABLE_MEMO_MAX) this.reachable.clear();
      this.reachable.set(key, ok);
    }
    return ok;
  }
}
