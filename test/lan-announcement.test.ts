/** LAN discovery messages (src/node/discovery/announcement.ts): what is believed and what not. */
import { describe, expect, it } from 'vitest';
import {
  encodeBase64url,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import {
  MAX_DATAGRAM,
  parseLanDatagram,
  QUERY,
  signLanMessage,
  verifyLanMessage,
} from '../src/node/discovery/announcement.ts';

async function newIdentity() {
  const pair = await generateNodeKeyPair();
  return identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}
const bytes = (text: string) => new TextEncoder().encode(text);
const payloadOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >;
const withPayload = (token: string, payload: object) => {
  const [h, , s] = token.split('.');
  return `${h}.${encodeBase64url(bytes(JSON.stringify(payload)))}.${s}`;
};

describe('LAN announcements', () => {
  it('a gateway announcement names its ID and URL and checks out', async () => {
    const gateway = await newIdentity();
    const token = await signLanMessage(gateway, 'gateway', 'http://10.0.0.5:8080');
    const parsed = parseLanDatagram(bytes(token));
    expect(parsed).toMatchObject({
      ok: true,
      message: { kind: 'gateway', id: gateway.id, url: 'http://10.0.0.5:8080' },
    });
    expect(await verifyLanMessage(token)).toBe(true);
    expect(parseLanDatagram(bytes(QUERY))).toEqual({ ok: true, message: { kind: 'query' } });
  });

  it('forgeries fail: another URL, another key for the ID, another signer', async () => {
    const gateway = await newIdentity();
    const attacker = await newIdentity();
    const token = await signLanMessage(gateway, 'gateway', 'http://10.0.0.5:8080');
    const payload = payloadOf(token);
    // The real ID and signature, the attacker's URL.
    expect(
      await verifyLanMessage(withPayload(token, { ...payload, url: 'http://10.0.0.66:80' })),
    ).toBe(false);
    // The attacker's own valid announcement, with the real gateway's ID put in.
    const own = await signLanMessage(attacker, 'gateway', 'http://10.0.0.66:80');
    const ownPayload = payloadOf(own);
    const resigned = await (async () => {
      const [h] = own.split('.');
      const input = `${h}.${encodeBase64url(bytes(JSON.stringify({ ...ownPayload, id: gateway.id })))}`;
      return `${input}.${encodeBase64url(await attacker.key.sign(bytes(input)))}`;
    })();
    expect(await verifyLanMessage(resigned)).toBe(false);
    // The real key and ID, signed by the attacker.
    const [h] = token.split('.');
    const input = `${h}.${encodeBase64url(bytes(JSON.stringify({ ...payload, url: 'http://10.0.0.66:80' })))}`;
    expect(
      await verifyLanMessage(`${input}.${encodeBase64url(await attacker.key.sign(bytes(input)))}`),
    ).toBe(false);
  });

  it('garbage is refused with a reason, never thrown', async () => {
    const gateway = await newIdentity();
    const token = await signLanMessage(gateway, 'gateway', 'http://10.0.0.5:8080');
    const junk = [
      new Uint8Array(0),
      new Uint8Array(MAX_DATAGRAM + 1),
      crypto.getRandomValues(new Uint8Array(300)),
      ...[1, 20, token.length - 1].map((n) => bytes(token.slice(0, n))),
      bytes(withPayload(token, { ...payloadOf(token), url: 'file:///etc/passwd' })),
      bytes(withPayload(token, { ...payloadOf(token), kind: 'candidate' })),
    ];
    for (const datagram of junk) {
      const parsed = parseLanDatagram(datagram);
      expect(parsed.ok, String(datagram.length)).toBe(false);
    }
    expect(await verifyLanMessage(token.slice(0, -3))).toBe(false);
  });
});
