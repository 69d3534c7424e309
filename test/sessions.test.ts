/**
 * The gateway's session table counts the sessions still connecting from each client address
 * (a connect is refused above a limit): the count follows sessions that open, close or are
 * replaced, on real node-datachannel associations.
 */
import { type DataChannel, PeerConnection } from 'node-datachannel';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeId, VerifiedRecord } from '../src/core/identity/index.ts';
import { DEFAULT_LIMITS } from '../src/node/gateway/limits.ts';
import type { Association } from '../src/node/gateway/rtc-endpoint.ts';
import { SessionTable } from '../src/node/gateway/sessions.ts';
import { silentLogger } from '../src/node/log.ts';
import { MemoryRegistry } from '../src/node/registry/index.ts';

const id = (c: string) => c.repeat(52) as NodeId;
const record = (node: NodeId): VerifiedRecord => ({
  jws: 'unused',
  id: node,
  ip6: 'fd00::1',
  publicKey: new Uint8Array(32),
  fingerprints: [],
  iat: 0,
  exp: 2 ** 31,
});

const closing: (() => void)[] = [];
afterEach(() => {
  for (const close of closing.splice(0)) close();
});

function table(): SessionTable {
  const t = new SessionTable({
    gatewayId: id('g'),
    registry: new MemoryRegistry(),
    limits: DEFAULT_LIMITS,
    logger: silentLogger,
    events: { opened: () => {}, gone: () => {}, message: () => {}, invalid: () => {} },
    presence: undefined,
  });
  closing.push(() => t.close('test over'));
  return t;
}

/** The gateway's side of an association, not connected to anything (it stays connecting). */
function association(): Association {
  const pc = new PeerConnection('gw', { iceServers: [], bindAddress: '127.0.0.1' });
  const ctl = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
  closing.push(() => pc.close());
  return { pc, ctl, answer: '' };
}

/** An association whose ctl really opens: the gateway's side and a node's, in this process. */
function connectedPair(): { association: Association; node: PeerConnection } {
  // Negotiated by hand, so nothing starts before the test says so.
  const config = { iceServers: [], bindAddress: '127.0.0.1', disableAutoNegotiation: true };
  const gw = new PeerConnection('gw', config);
  const node = new PeerConnection('node', config);
  closing.push(() => {
    node.close();
    gw.close();
  });
  node.onLocalDescription((sdp, type) => {
    gw.setRemoteDescription(sdp, type);
    gw.setLocalDescription();
  });
  gw.onLocalDescription((sdp, type) => node.setRemoteDescription(sdp, type));
  node.onLocalCandidate((c, mid) => gw.addRemoteCandidate(c, mid));
  gw.onLocalCandidate((c, mid) => node.addRemoteCandidate(c, mid));
  const ctl: DataChannel = gw.createDataChannel('ctl', { negotiated: true, id: 0 });
  node.createDataChannel('ctl', { negotiated: true, id: 0 });
  return { association: { pc: gw, ctl, answer: '' }, node };
}

describe('SessionTable.connectingFrom', () => {
  it('counts the sessions connecting from each address', () => {
    const t = table();
    t.open(id('a'), record(id('a')), '10.0.0.1', association());
    t.open(id('b'), record(id('b')), '10.0.0.1', association());
    t.open(id('c'), record(id('c')), '10.0.0.2', association());
    expect(t.connectingFrom('10.0.0.1')).toBe(2);
    expect(t.connectingFrom('10.0.0.2')).toBe(1);
    expect(t.connectingFrom('10.0.0.3')).toBe(0);
  });

  it('a session replaced before it opened leaves the count of its address', () => {
    const t = table();
    t.open(id('a'), record(id('a')), '10.0.0.1', association());
    // The same node connects again from another address: the new session replaces the old.
    t.open(id('a'), record(id('a')), '10.0.0.2', association());
    expect(t.connectingFrom('10.0.0.1')).toBe(0);
    expect(t.connectingFrom('10.0.0.2')).toBe(1);
    t.open(id('a'), record(id('a')), '10.0.0.2', association());
    expect(t.connectingFrom('10.0.0.2')).toBe(1);
    expect(t.size).toBe(1);
  });

  it('a session whose connection closes before it opened leaves the count', async () => {
    const t = table();
    const gone = association();
    t.open(id('a'), record(id('a')), '10.0.0.1', gone);
    t.open(id('b'), record(id('b')), '10.0.0.1', association());
    gone.pc.close();
    await expect.poll(() => t.connectingFrom('10.0.0.1'), { timeout: 10_000 }).toBe(1);
    expect(t.has(id('a'))).toBe(false);
  });

  it('a session whose ctl opens is no longer connecting', async () => {
    const t = table();
    const { association: up, node } = connectedPair();
    t.open(id('a'), record(id('a')), '10.0.0.1', up);
    t.open(id('b'), record(id('b')), '10.0.0.1', association());
    expect(t.connectingFrom('10.0.0.1')).toBe(2);
    node.setLocalDescription();
    await expect.poll(() => t.openCount, { timeout: 20_000 }).toBe(1);
    expect(t.connectingFrom('10.0.0.1')).toBe(1);
  });

  it('nothing is counted once the table is closed', async () => {
    const t = table();
    for (const c of ['a', 'b', 'c']) t.open(id(c), record(id(c)), '10.0.0.1', association());
    t.close('shutting down');
    expect(t.connectingFrom('10.0.0.1')).toBe(0);
    expect(t.size).toBe(0);
  });
});
