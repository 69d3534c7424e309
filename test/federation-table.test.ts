/** The federation's presence table and the relay's peer networks: the rules, case by case. */
import { describe, expect, it } from 'vitest';
import type { NodeId } from '../src/core/identity/index.ts';
import { parsePeerUrl } from '../src/node/gateway/federation/federation.ts';
import { RouteTable } from '../src/node/gateway/federation/routes.ts';
import { PeerNetworks, peerAllowed } from '../src/node/turn/address-policy.ts';

const id = (c: string) => c.repeat(52) as NodeId;
const [n1, g1, g2, g3, p1, p2] = ['n', 'a', 'b', 'c', 'p', 'q'].map(id) as NodeId[] as [
  NodeId,
  NodeId,
  NodeId,
  NodeId,
  NodeId,
  NodeId,
];

describe('RouteTable', () => {
  it('keeps every peer offer and picks the shortest path; a withdrawal falls back', () => {
    const table = new RouteTable({ maxRoutes: 100, maxRoutesPerPeer: 100 });
    expect(table.set(n1, p1, [g1, g2, p1])).toBe(true);
    expect(table.set(n1, p2, [g1, p2])).toBe(true);
    expect(table.best(n1)).toEqual({ via: p2, path: [g1, p2] });
    // A longer offer does not change the best route.
    expect(table.set(n1, p1, [g1, g2, g3, p1])).toBe(false);
    expect(table.remove(n1, p2)).toBe(true);
    expect(table.best(n1)?.via).toBe(p1);
    expect(table.removePeer(p1)).toEqual([n1]);
    expect(table.best(n1)).toBeUndefined();
    expect(table.size).toBe(0);
  });

  it('bounds what one peer and all peers may fill', () => {
    const table = new RouteTable({ maxRoutes: 3, maxRoutesPerPeer: 2 });
    table.set(id('d'), p1, [p1]);
    table.set(id('e'), p1, [p1]);
    expect(table.set(id('f'), p1, [p1])).toBe(false);
    table.set(id('f'), p2, [p2]);
    expect(table.set(id('g'), p2, [p2])).toBe(false);
    expect(table.size).toBe(3);
    expect(table.refused).toBe(2);
    // Replacing an offer a peer already made is not a new entry.
    expect(table.set(id('d'), p1, [g1, p1])).toBe(true);
    expect(table.size).toBe(3);
  });
});

describe('parsePeerUrl', () => {
  it('turns http(s) into ws(s) on /v1/federation and reads a pinned ID', () => {
    expect(parsePeerUrl('http://10.0.0.2:8080')).toEqual({
      url: 'http://10.0.0.2:8080',
      wsUrl: 'ws://10.0.0.2:8080/v1/federation',
    });
    expect(parsePeerUrl(`https://gw.example.org/#${g1}`)).toMatchObject({
      wsUrl: 'wss://gw.example.org/v1/federation',
      expected: g1,
    });
    expect(() => parsePeerUrl('ftp://x')).toThrow(/http\(s\) or ws\(s\)/);
    expect(() => parsePeerUrl('http://x/#nope')).toThrow(/not a gateway ID/);
    expect(() => parsePeerUrl('not a url')).toThrow(/must be a URL/);
  });
});

describe('relay peer networks (--turn-peer-net)', () => {
  it('open only the named private ranges, nothing else private', () => {
    const nets = new PeerNetworks(['10.77.12.0/24']);
    expect(peerAllowed('10.77.12.2', false, nets)).toBe(true);
    expect(peerAllowed('10.77.2.2', false, nets)).toBe(false);
    expect(peerAllowed('127.0.0.1', false, nets)).toBe(false);
    expect(peerAllowed('192.168.1.1', false, nets)).toBe(false);
    expect(peerAllowed('203.0.113.9', false, nets)).toBe(true);
    expect(peerAllowed('::ffff:10.77.12.2', false, nets)).toBe(true);
  });

  it('refuse loopback, public, multicast and over-wide ranges', () => {
    expect(() => new PeerNetworks(['127.0.0.0/8'])).toThrow(/loopback/);
    expect(() => new PeerNetworks(['203.0.113.0/24'])).toThrow(/public/);
    expect(() => new PeerNetworks(['224.0.0.0/8'])).toThrow(/multicast/);
    expect(() => new PeerNetworks(['10.0.0.0/7'])).toThrow(/wider/);
    expect(() => new PeerNetworks(['10.0.0.0'])).toThrow(/ADDRESS\/PREFIX/);
    expect(new PeerNetworks(['fd00:1::/64']).has('fd00:1::5')).toBe(true);
  });
});
