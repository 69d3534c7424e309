/** Dial routing (DESIGN §2) without a network: the gateway's Signaling with in-memory parties. */
import { describe, expect, it } from 'vitest';
import {
  createNodeRecord,
  generateNodeKeyPair,
  identityOf,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import type { GatewayToNode } from '../src/core/protocol/messages.ts';
import { DEFAULT_LIMITS } from '../src/node/gateway/limits.ts';
import { type DialParty, Signaling } from '../src/node/gateway/signaling.ts';
import { MemoryRegistry } from '../src/node/registry/index.ts';

const FP = `sha-256 ${'AB:'.repeat(31)}CD`;
const SDP = `v=0\r\na=fingerprint:${FP}\r\n`;

async function party(): Promise<{
  identity: NodeIdentity;
  got: GatewayToNode[];
  party: DialParty;
}> {
  const pair = await generateNodeKeyPair();
  const identity = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
  const got: GatewayToNode[] = [];
  return { identity, got, party: { id: identity.id, deliver: (m) => got.push(m) } };
}

describe('signaling', () => {
  it('answered dials that linger for late candidates do not count against maxPendingDials', async () => {
    const registry = new MemoryRegistry();
    const a = await party();
    const b = await party();
    const now = Date.now();
    await registry.upsert({
      id: b.identity.id,
      ip6: b.identity.ip6,
      record: 'unused',
      gatewayId: 'gw',
      lastSeen: now,
      expiresAt: now + 60_000,
      push: null,
    });
    const signaling = new Signaling(
      registry,
      (id) => (id === b.identity.id ? b.party : undefined),
      { ...DEFAULT_LIMITS, maxPendingDials: 1 },
    );
    const record = await createNodeRecord(a.identity, { fingerprints: [FP] });
    const dial = (dialId: string) =>
      signaling.dial(a.party, { t: 'dial', dialId, to: b.identity.id, offer: SDP, record });
    try {
      await dial('dial-number-one-0001');
      await dial('dial-number-two-0002');
      expect(a.got.map((m) => m.t)).toEqual(['ringing', 'dial-failed']);
      expect(a.got[1]).toMatchObject({ code: 'busy' });
      signaling.handle(b.party, {
        t: 'answer',
        dialId: 'dial-number-one-0001',
        answer: SDP,
        record,
      });
      expect(signaling.pending).toBe(1); // kept for late candidates
      await dial('dial-number-three-03');
      expect(a.got.map((m) => m.t)).toEqual(['ringing', 'dial-failed', 'answer', 'ringing']);
    } finally {
      signaling.close();
    }
  });
});
