/**
 * A small STUN/TURN client over a real UDP socket on loopback, for tests of the server: it
 * sends what it is told (the codec builds it) and hands back what comes. It answers a 401 or
 * 438 challenge by itself when asked to authenticate.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createAuthorization, createNodeRecord } from '../../src/core/identity/index.ts';
import {
  type AttributeCodec,
  AttributeType,
  decodeMessage,
  ErrorCode,
  type IntegrityAlgorithm,
  longTermKey,
  looksLikeStun,
  MessageBuilder,
  Nonce,
  Realm,
  type StunMessage,
  Username,
} from '../../src/node/stun/index.ts';
import { restPassword } from '../../src/node/turn/credentials.ts';
import { makeNodeIdentity } from './node-node.ts';

export interface Datagram {
  bytes: Uint8Array;
  from: { address: string; port: number };
}

type Fill = (b: MessageBuilder) => void;

export class TestTurnClient {
  private readonly inbox: Datagram[] = [];
  private waiters: (() => void)[] = [];
  realm: string | undefined;
  nonce: string | undefined;

  private constructor(
    readonly socket: Socket,
    readonly server: { host: string; port: number },
    public username: string,
    public password: string,
  ) {
    socket.on('message', (msg, rinfo) => {
      this.inbox.push({
        bytes: new Uint8Array(msg),
        from: { address: rinfo.address, port: rinfo.port },
      });
      for (const w of this.waiters) w();
      this.waiters = [];
    });
  }

  /** A client on a fresh loopback socket, with REST credentials made from `secret` for `user`. */
  static async open(
    server: { host: string; port: number },
    credentials: { username: string; password: string },
    bindAddress = '127.0.0.1',
  ): Promise<TestTurnClient> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, bindAddress, () => resolve()));
    return new TestTurnClient(socket, server, credentials.username, credentials.password);
  }

  static credentials(
    secret: string,
    user: string,
    expiresAtS = Math.floor(Date.now() / 1000) + 3600,
  ) {
    const username = `${expiresAtS}:${user}`;
    return { username, password: restPassword(secret, username) };
  }

  get port(): number {
    return this.socket.address().port;
  }

  get key(): Uint8Array {
    return longTermKey(this.username, this.realm ?? '', this.password);
  }

  sendRaw(bytes: Uint8Array, to = this.server): void {
    this.socket.send(bytes, to.port, to.host);
  }

  /** The next datagram that `accept` takes, or undefined after `timeoutMs`. */
  async next(
    accept: (d: Datagram) => boolean = () => true,
    timeoutMs = 2000,
  ): Promise<Datagram | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(accept);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a request and waits for the response with its transaction ID. */
  async transact(request: Uint8Array): Promise<StunMessage> {
    const tid = Buffer.from(request.subarray(8, 20)).toString('hex');
    this.sendRaw(request);
    const reply = await this.next(
      (d) => looksLikeStun(d.bytes) && Buffer.from(d.bytes.subarray(8, 20)).toString('hex') === tid,
    );
    if (!reply) throw new Error('no response from the server');
    return decodeMessage(reply.bytes);
  }

  /** A request with long-term credentials; learns (or refreshes) the realm and nonce first. */
  async request(
    method: number,
    fill: Fill = () => {},
    options: {
      algorithm?: IntegrityAlgorithm;
      fingerprint?: boolean;
      transactionId?: Uint8Array;
    } = {},
  ): Promise<StunMessage> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.nonce === undefined) {
        const challenge = await this.transact(new MessageBuilder(method, 'request').build());
        this.learn(challenge);
      }
      const response = await this.transact(this.signed(method, fill, options));
      const code = response.cls === 'error' ? response.get(ErrorCode)?.code : undefined;
      if (code === 438) {
        this.learn(response);
        continue;
      }
      return response;
    }
    throw new Error('the server kept saying the nonce is stale');
  }

  /** Builds a request signed with the current realm, nonce and credentials. */
  signed(
    method: number,
    fill: Fill = () => {},
    options: {
      algorithm?: IntegrityAlgorithm;
      fingerprint?: boolean;
      transactionId?: Uint8Array;
    } = {},
  ): Uint8Array {
    const b = new MessageBuilder(method, 'request', options.transactionId);
    fill(b);
    b.add(Username, this.username)
      .add(Realm, this.realm ?? '')
      .add(Nonce, this.nonce ?? '');
    return b.build({
      integrity: { key: this.key, algorithm: options.algorithm ?? 'sha1' },
      fingerprint: options.fingerprint ?? true,
    });
  }

  learn(challenge: StunMessage): void {
    const realm = challenge.get(Realm);
    const nonce = challenge.get(Nonce);
    if (realm === undefined || nonce === undefined)
      throw new Error(
        `expected a challenge, got ${challenge.cls} ${challenge.get(ErrorCode)?.code}`,
      );
    this.realm = realm;
    this.nonce = nonce;
  }

  close(): void {
    this.socket.close();
  }
}

/** The error code of a response, or 0 for success. */
export function codeOf(m: StunMessage): number {
  return m.cls === 'error' ? (m.get(ErrorCode)?.code ?? -1) : 0;
}

export function attr<T>(m: StunMessage, codec: AttributeCodec<T>): T {
  const v = m.get(codec);
  if (v === undefined) throw new Error(`no ${codec.name} in the response`);
  return v;
}

export const hasIntegrity = (m: StunMessage): boolean =>
  m.has(AttributeType.MESSAGE_INTEGRITY) || m.has(AttributeType.MESSAGE_INTEGRITY_SHA256);

/** A plain UDP socket on loopback: a peer for the relay. */
export async function openPeer(address = '127.0.0.1'): Promise<{
  socket: Socket;
  port: number;
  received: Datagram[];
  next(timeoutMs?: number): Promise<Datagram | undefined>;
  close(): void;
}> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, address, () => resolve()));
  const received: Datagram[] = [];
  let wake: (() => void) | undefined;
  socket.on('message', (msg, rinfo) => {
    received.push({
      bytes: new Uint8Array(msg),
      from: { address: rinfo.address, port: rinfo.port },
    });
    wake?.();
  });
  return {
    socket,
    port: socket.address().port,
    received,
    async next(timeoutMs = 1000) {
      if (received.length === 0)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      wake = undefined;
      return received.shift();
    },
    close: () => socket.close(),
  };
}

export interface IssuedIceServer {
  urls: string[];
  username: string;
  credential: string;
}

/** Opens a real session (POST /v1/connect) as a new node; returns its ID and the ICE servers given. */
export async function connectForIceServers(
  gatewayUrl: string,
): Promise<{ id: string; iceServers: IssuedIceServer[] }> {
  const node = await makeNodeIdentity();
  const pc = node.rtc.createPeerConnection({ iceServers: [] });
  try {
    pc.createDataChannel('ctl', { negotiated: true, id: 0 });
    await pc.setLocalDescription();
    const res = await fetch(`${gatewayUrl}/v1/connect`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: await createAuthorization(node.identity.key, gatewayUrl),
      },
      body: JSON.stringify({
        offer: pc.localDescription?.sdp,
        record: await createNodeRecord(node.identity, {
          fingerprints: [node.certificate.fingerprint],
        }),
      }),
    });
    if (res.status !== 200) throw new Error(`connect: ${res.status} ${await res.text()}`);
    const { iceServers } = (await res.json()) as { iceServers: IssuedIceServer[] };
    return { id: node.identity.id, iceServers };
  } finally {
    pc.close();
  }
}
