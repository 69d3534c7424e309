/**
 * One link between two federated gateways: a WebSocket over which each side proves it holds
 * the key of the signed record it shows (a signature over the other side's fresh nonce), then
 * JSON frames (protocol.ts). A link never trusts what it carries beyond its bounds: frames are
 * size-capped, parsed, and rate-limited; a peer that keeps sending garbage or floods is cut.
 */
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import * as z from 'zod/mini';
import {
  IdentityError,
  type NodeId,
  type NodeIdentity,
  verifyNodeRecord,
} from '../../../core/identity/index.ts';
import { checkJwsSignature, decodeJws, signJws } from '../../../core/identity/jws.ts';
import { parseValue } from '../../../core/protocol/messages.ts';
import type { Logger } from '../../log.ts';
import { RateLimiter } from '../../rate-limit.ts';
import {
  authSchema,
  FEDERATION_VERSION,
  helloSchema,
  type LinkMessage,
  linkMessageSchema,
  MAX_FRAME_BYTES,
  proofClaimsSchema,
} from './protocol.ts';

/** The handshake must finish within this. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Frames a peer may send: a steady rate and a burst (a full table on link-up is a burst). */
const FRAME_RATE = { perSecond: 2000, burst: 20_000 };
/** Dropped frames (garbage or over the rate) after which the link is cut. */
const MAX_DROPPED = 1000;
/** Bytes queued toward a peer that does not read, after which the link is cut. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** How far a proof's issue time may be from ours. */
const PROOF_SKEW_S = 120;

export interface LinkIdentity {
  identity: NodeIdentity;
  /** A fresh signed record of this gateway (its node key, bound to its DTLS certificate). */
  record(): Promise<string>;
}

export interface LinkEvents {
  /** The peer proved who it is; return false to refuse it (the link closes). */
  up(link: Link): boolean;
  message(link: Link, msg: LinkMessage): void;
  closed(link: Link, reason: string): void;
}

export interface LinkOptions {
  socket: WebSocket;
  self: LinkIdentity;
  /** Whether this side opened the link (for the tie-break between two links to one peer). */
  initiator: boolean;
  /** The URL dialled (outgoing links), for logs. */
  url?: string;
  /** Only this gateway may be on the other end (a pinned --peer). */
  expectedPeer?: NodeId;
  /** The TCP connection's addresses (our side, the peer's), as this host sees them. */
  addresses: { local: string; remote: string };
  events: LinkEvents;
  logger: Logger;
}

export class Link {
  /** The peer gateway's ID, once it has proved it. */
  peer: NodeId | undefined;
  private readonly nonce = randomBytes(18).toString('base64url');
  private peerNonce: string | undefined;
  private authSent: Promise<void> | undefined;
  private inbox: Promise<void> = Promise.resolve();
  private readonly limiter = new RateLimiter(FRAME_RATE, 1);
  private dropped = 0;
  private closed = false;
  private awaitingPong = false;
  private readonly handshakeTimer: ReturnType<typeof setTimeout>;
  readonly stats = { received: 0, sent: 0, dropped: 0 };

  constructor(private readonly options: LinkOptions) {
    const { socket } = options;
    this.handshakeTimer = setTimeout(
      () => this.close('the handshake did not finish in time'),
      HANDSHAKE_TIMEOUT_MS,
    );
    this.handshakeTimer.unref();
    socket.on('message', (data, isBinary) => {
      if (isBinary) return this.drop('a binary frame');
      const text = Array.isArray(data)
        ? Buffer.concat(data).toString()
        : Buffer.from(data as ArrayBuffer).toString();
      // One frame at a time: the handshake's checks are asynchronous, and what follows it
      // must not be read before it is done.
      this.inbox = this.inbox
        .then(() => this.receive(text))
        .catch((err: unknown) => this.close(`could not handle a frame: ${(err as Error).message}`));
    });
    socket.on('pong', () => {
      this.awaitingPong = false;
    });
    socket.on('close', () => this.close('the connection closed'));
    socket.on('error', (err) => this.close(err.message));
    this.sendRaw({ t: 'hello', v: FEDERATION_VERSION, nonce: this.nonce });
  }

  get initiator(): boolean {
    return this.options.initiator;
  }

  get url(): string | undefined {
    return this.options.url;
  }

  /** Our address on this link, and the peer's. */
  get addresses(): { local: string; remote: string } {
    return this.options.addresses;
  }

  get up(): boolean {
    return this.peer !== undefined && !this.closed;
  }

  /** Pings the peer; one that has not answered the previous ping is cut. */
  ping(): void {
    if (!this.up) return;
    if (this.awaitingPong) {
      this.close('the peer stopped answering pings');
      return;
    }
    this.awaitingPong = true;
    this.options.socket.ping();
  }

  send(msg: LinkMessage): void {
    if (!this.up) return;
    this.sendRaw(msg);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    const { socket } = this.options;
    if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING)
      socket.close(1000, reason.slice(0, 100));
    // A peer that does not answer the close is not waited for.
    setTimeout(() => socket.terminate(), 2000).unref();
    this.options.events.closed(this, reason);
  }

  private sendRaw(msg: object): void {
    const { socket } = this.options;
    if (socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.close('the peer does not read what it is sent');
      return;
    }
    this.stats.sent++;
    socket.send(JSON.stringify(msg));
  }

  private drop(what: string): void {
    this.stats.dropped++;
    if (++this.dropped === 1 || this.dropped % 100 === 0)
      this.options.logger.warn(
        { peer: this.peer, url: this.options.url, dropped: this.dropped },
        `federation link: dropped ${what}`,
      );
    if (this.dropped >= MAX_DROPPED) this.close(`too many bad or excess frames (${what})`);
  }

  private async receive(text: string): Promise<void> {
    if (this.closed) return;
    if (!this.limiter.take('peer')) return this.drop('a frame over the rate limit');
    if (text.length > MAX_FRAME_BYTES) return this.drop('an oversized frame');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return this.drop('a frame that is not JSON');
    }
    this.stats.received++;
    if (this.peer) {
      const parsed = parseValue(linkMessageSchema, json);
      if (!parsed.ok) return this.drop(`a malformed frame (${parsed.message})`);
      this.options.events.message(this, parsed.value);
      return;
    }
    const hello = z.safeParse(helloSchema, json);
    if (hello.success) {
      if (this.peerNonce) return this.close('a second hello');
      if (hello.data.v !== FEDERATION_VERSION)
        return this.close(`federation version ${hello.data.v} is not ${FEDERATION_VERSION}`);
      this.peerNonce = hello.data.nonce;
      this.authSent = this.sendAuth(hello.data.nonce);
      await this.authSent;
      return;
    }
    const auth = z.safeParse(authSchema, json);
    if (!auth.success || !this.peerNonce) return this.close('the peer did not authenticate');
    await this.checkAuth(auth.data.record, auth.data.proof);
  }

  private async sendAuth(peerNonce: string): Promise<void> {
    const { identity } = this.options.self;
    const record = await this.options.self.record();
    const proof = await signJws(
      identity.key,
      { typ: 'rtcmesh-federation', alg: 'ES256' },
      {
        typ: 'rtcmesh-federation',
        from: identity.id,
        nonce: peerNonce,
        iat: Math.floor(Date.now() / 1000),
      },
    );
    this.sendRaw({ t: 'auth', record, proof });
  }

  /** The peer's record must check out, and its proof sign our nonce with the record's key. */
  private async checkAuth(recordJws: string, proofJws: string): Promise<void> {
    try {
      const record = await verifyNodeRecord(recordJws);
      const proof = decodeJws(proofJws, 'federation proof');
      await checkJwsSignature(proof, record.publicKey, 'federation proof');
      const claims = z.safeParse(proofClaimsSchema, proof.payload);
      if (!claims.success) throw new IdentityError('malformed', 'federation proof claims');
      const c = claims.data;
      if (c.nonce !== this.nonce)
        throw new IdentityError('bad-signature', 'proof of another nonce');
      if (c.from !== record.id) throw new IdentityError('wrong-peer', 'proof by another gateway');
      if (Math.abs(c.iat - Date.now() / 1000) > PROOF_SKEW_S)
        throw new IdentityError('expired', 'the proof is stale or from the future');
      if (record.id === this.options.self.identity.id)
        throw new IdentityError('wrong-peer', 'this is a link to ourselves');
      const expected = this.options.expectedPeer;
      if (expected && expected !== record.id)
        throw new IdentityError('wrong-peer', `expected gateway ${expected}, met ${record.id}`);
      // Our own proof goes out before anything else the link sends.
      await this.authSent;
      clearTimeout(this.handshakeTimer);
      this.peer = record.id;
      if (!this.options.events.up(this)) {
        this.peer = undefined;
        this.close('refused');
      }
    } catch (err) {
      this.close(`the peer did not prove its identity: ${(err as Error).message}`);
    }
  }
}
