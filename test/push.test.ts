/**
 * Web Push pieces on their own: the test push service's RFC 8291 decryption (against the
 * RFC's own example), the gateway's VAPID key file, which endpoints it will post to, and its
 * sender against the test push service (VAPID checked, payload decrypted, 410 reported).
 */
import { createECDH, randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import webPush from 'web-push';
import { decrypt, PushService } from '../e2e/support/push-service.ts';
import {
  type PushPayload,
  parseValue,
  pushPayloadSchema,
  pushSubscriptionSchema,
} from '../src/core/protocol/messages.ts';
import {
  loadOrCreateVapidKeys,
  PushSender,
  pushEndpointProblem,
  VAPID_KEY_FILE,
} from '../src/node/gateway/push.ts';

const b64 = (text: string) => Buffer.from(text, 'base64url');

describe('aes128gcm decryption (the test push service)', () => {
  it('decrypts the example of RFC 8291 Appendix A', () => {
    const ua = createECDH('prime256v1');
    ua.setPrivateKey(b64('q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94'));
    expect(ua.getPublicKey().toString('base64url')).toBe(
      'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4',
    );
    const body = b64(
      'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
    );
    expect(decrypt(body, ua, b64('BTBZMqHH6r4Tts7J_aSIgg'))).toBe(
      'When I grow up, I want to be a watermelon',
    );
  });

  it('decrypts what web-push encrypts, and refuses a tampered body or the wrong secret', () => {
    const ua = createECDH('prime256v1');
    ua.generateKeys();
    const auth = randomBytes(16);
    const subscription = {
      endpoint: 'https://push.example/1',
      keys: { p256dh: ua.getPublicKey().toString('base64url'), auth: auth.toString('base64url') },
    };
    const text = `{"hello":"${'x'.repeat(3000)}"}`;
    const { body } = webPush.generateRequestDetails(subscription, text, {
      contentEncoding: 'aes128gcm',
    });
    expect(decrypt(body, ua, auth)).toBe(text);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    expect(() => decrypt(tampered, ua, auth)).toThrow();
    expect(() => decrypt(body, ua, randomBytes(16))).toThrow();
  });
});

describe('the gateway VAPID key', () => {
  it('is made once, mode 0600, and read back the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-vapid-'));
    const first = await loadOrCreateVapidKeys(dir);
    expect(statSync(join(dir, VAPID_KEY_FILE)).mode & 0o777).toBe(0o600);
    const raw = b64(first.publicKey);
    expect(raw.length).toBe(65);
    expect(raw[0]).toBe(4);
    expect(b64(first.privateKey).length).toBe(32);
    expect(await loadOrCreateVapidKeys(dir)).toEqual(first);
  });
});

describe('push endpoints the gateway posts to', () => {
  it('only https on public addresses, unless private endpoints are allowed', () => {
    expect(pushEndpointProblem('https://fcm.googleapis.com/fcm/send/abc', false)).toBeUndefined();
    expect(pushEndpointProblem('https://203.0.113.5/push/1', false)).toBeUndefined();
    for (const endpoint of [
      'http://push.example/1',
      'https://127.0.0.1/push',
      'https://10.1.2.3/push',
      'https://192.168.1.1/push',
      'https://169.254.169.254/latest/meta-data',
      'https://[::1]/push',
      'https://[fd00::1]/push',
      'https://user:pass@push.example/1',
      'not a url',
      'ftp://push.example/1',
    ])
      expect(pushEndpointProblem(endpoint, false), endpoint).toMatch(/push endpoint/);
    expect(pushEndpointProblem('http://127.0.0.1:9999/push/1', true)).toBeUndefined();
    expect(pushEndpointProblem('https://[::1]/push', true)).toBeUndefined();
    expect(pushEndpointProblem('ftp://push.example/1', true)).toMatch(/https/);
  });

  it('schemas: a subscription as browsers give it; a push payload', () => {
    const ua = createECDH('prime256v1');
    ua.generateKeys();
    const subscription = {
      endpoint: 'https://push.example/1',
      expirationTime: null,
      keys: {
        p256dh: ua.getPublicKey().toString('base64url'),
        auth: randomBytes(16).toString('base64url'),
      },
    };
    const parsed = parseValue(pushSubscriptionSchema, subscription);
    expect(parsed.ok && parsed.value).toEqual({
      endpoint: subscription.endpoint,
      keys: subscription.keys,
    });
    expect(
      parseValue(pushSubscriptionSchema, { ...subscription, keys: { p256dh: 'x', auth: 'y' } }).ok,
    ).toBe(false);
    expect(
      parseValue(pushPayloadSchema, { t: 'incoming', dialId: 'short', from: 'a', sentAt: 1 }).ok,
    ).toBe(false);
  });
});

describe('PushSender against a push service', () => {
  let service: PushService;
  let sender: PushSender;
  const vapidDir = mkdtempSync(join(tmpdir(), 'rtcmesh-vapid-'));
  const payload: PushPayload = {
    t: 'incoming',
    dialId: 'AAAAAAAAAAAAAAAAAAAAAA',
    from: 'b'.repeat(52),
    name: 'Alice',
    sentAt: 1,
    expiresAt: 2,
  };
  beforeAll(async () => {
    service = await PushService.start();
    sender = new PushSender({
      vapid: await loadOrCreateVapidKeys(vapidDir),
      subject: 'mailto:ops@example.org',
      allowPrivate: true,
    });
  });
  afterAll(async () => {
    await service.close();
  });

  it('sends a VAPID-signed, encrypted push with urgency high and the TTL asked', async () => {
    const subscription = service.subscribe();
    expect(await sender.send(subscription, payload, 60)).toEqual({ result: 'sent', status: 201 });
    const push = await service.nextPush(subscription);
    expect(JSON.parse(push.plaintext)).toEqual(payload);
    expect(push.vapidKey).toBe(sender.publicKey);
    expect(push.claims).toMatchObject({ aud: service.origin, sub: 'mailto:ops@example.org' });
    expect(push.ttl).toBe(60);
    expect(push.urgency).toBe('high');
    expect(service.refused).toEqual([]);
  });

  it('reports a subscription the service says is gone, and refuses private endpoints by default', async () => {
    const gone = service.subscribe();
    service.answerWith(gone, 410);
    expect(await sender.send(gone, payload, 60)).toMatchObject({ result: 'gone', status: 410 });
    const strict = new PushSender({
      vapid: await loadOrCreateVapidKeys(vapidDir),
      subject: 'mailto:ops@example.org',
      allowPrivate: false,
    });
    const local = service.subscribe();
    expect(await strict.send(local, payload, 60)).toMatchObject({ result: 'refused' });
    // A name is checked when connecting: localhost resolves to loopback, so it is refused.
    const byName = {
      ...local,
      endpoint: local.endpoint.replace('http://127.0.0.1', 'https://localhost'),
    };
    expect(await strict.send(byName, payload, 60)).toMatchObject({
      result: 'refused',
      message: expect.stringMatching(/resolves to .* not public/),
    });
    expect(service.received.filter((p) => p.endpoint === local.endpoint)).toEqual([]);
  });
});
