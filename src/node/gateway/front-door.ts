/**
 * The gateway's TCP front door: the TLS port (443 by default) and the plain HTTP port. On
 * each connection the first byte (after the TLS handshake, on the TLS port) says what it
 * is: 0x00–0x03 is a STUN message, so TURN over TCP/TLS (the TURN server's stream transport);
 * anything else is HTTP. A TURN client's first frame is always a STUN request (ChannelData
 * needs a channel bound by one), so HTTP methods starting with 0x40–0x4F letters never clash.
 * A TLS client that offers only the ALPN "stun.turn" (RFC 7443) goes to TURN at once.
 *
 * HTTP goes to the app (the gateway's HttpFront: PWA and API) on the TLS port, or on the
 * plain port when there is no TLS; with TLS, the plain port's HTTP is the redirect server
 * (ACME challenges, redirect to https). Connections are capped in all and per address, and
 * one that sends nothing (or no TLS handshake) in time is closed.
 */
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { addressKey } from '../stun/ip.ts';
import type { TurnServer } from '../turn/server.ts';
import type { ListenAddress } from './config.ts';
import type { GatewayLimits } from './limits.ts';
import type { CertificateSource } from './tls/certificate-source.ts';

/** The ALPN protocol id of STUN/TURN (RFC 7443). */
const ALPN_TURN = 'stun.turn';

export interface FrontDoorOptions {
  limits: GatewayLimits;
  /** HTTP on the TLS port (or on the plain port without TLS): PWA and API. */
  app: HttpServer;
  /** With TLS, HTTP on the plain port: challenges and redirects. */
  plain: HttpServer | undefined;
  turn: TurnServer | undefined;
  metrics: Registry;
  refused: (reason: string) => void;
  logger: Logger;
}

type Port = 'plain' | 'tls';

export class FrontDoor {
  private readonly plainServer: Server;
  private tlsServer: TlsServer | undefined;
  private readonly perAddress = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly countConnection: Counter;
  private readonly firstByteMs: number;

  constructor(private readonly options: FrontDoorOptions) {
    this.firstByteMs = Math.min(10_000, options.limits.requestTimeoutMs);
    this.countConnection = new Counter({
      name: 'rtcmesh_front_door_connections_total',
      help: 'Connections to the TCP front door, by port (plain, tls) and what they turned out to be (http, turn, refused, bad).',
      labelNames: ['port', 'kind'],
      registers: [options.metrics],
    });
    // Node's HTTP server checks request timeouts only once it has "listened"; here it is
    // handed connections instead, so start its checks (slow headers must still time out).
    for (const server of [options.app, options.plain]) server?.emit('listening');
    this.plainServer = createNetServer((socket) => {
      if (this.admit(socket, 'plain')) this.route(socket, 'plain');
    });
  }

  async listenPlain(at: ListenAddress): Promise<number> {
    return listenOn(this.plainServer, at);
  }

  /** Starts the TLS port with the source's certificate, and every new one it gets. */
  async listenTls(at: ListenAddress, certificates: CertificateSource): Promise<number> {
    const { cert, key } = certificates.current;
    const server = createTlsServer({
      cert,
      key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: this.firstByteMs,
      ALPNCallback: ({ protocols }) => {
        if (protocols.includes('http/1.1')) return 'http/1.1';
        if (protocols.includes(ALPN_TURN)) return ALPN_TURN;
        return undefined;
      },
    });
    // Caps apply to the TCP connection, before any TLS work is spent on it.
    server.prependListener('connection', (raw: Socket) => {
      if (!this.admit(raw, 'tls')) raw.destroy();
    });
    server.on('secureConnection', (socket: TLSSocket) => this.route(socket, 'tls'));
    // A failed or timed-out handshake: Node leaves the connection open for whoever listens.
    server.on('tlsClientError', (_err, socket) => {
      this.countConnection.inc({ port: 'tls', kind: 'bad' });
      socket.destroy();
    });
    certificates.onChange((pair) => server.setSecureContext({ cert: pair.cert, key: pair.key }));
    this.tlsServer = server;
    return listenOn(server, at);
  }

  /** Stops accepting, and after `graceMs` ends the connections still open. */
  async close(graceMs: number): Promise<void> {
    const closing = [this.plainServer, this.tlsServer]
      .filter((s): s is Server => s?.listening === true)
      .map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    await Promise.all(closing);
    clearTimeout(timer);
    // It never listened (connections are handed to it), but its request-timeout checks were
    // started above; closing it stops them. (The app server is HttpFront's to close.)
    this.options.plain?.close(() => {});
  }

  /** Counts the connection against the caps; false (and counted as refused) over them. */
  private admit(socket: Socket, port: Port): boolean {
    const { limits } = this.options;
    const key = addressKey(socket.remoteAddress ?? 'unknown');
    const n = (this.perAddress.get(key) ?? 0) + 1;
    if (n > limits.maxConnectionsPerIp || this.sockets.size >= limits.maxConnections) {
      this.options.refused('too-many-connections');
      this.countConnection.inc({ port, kind: 'refused' });
      socket.destroy();
      return false;
    }
    this.perAddress.set(key, n);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(key);
      else this.perAddress.set(key, left);
    });
    socket.on('error', () => {}); // a reset ends in 'close'
    return true;
  }

  /** Waits for the first bytes, puts them back, and hands the connection on. */
  private route(socket: Socket, port: Port): void {
    const turn = this.options.turn;
    const transport = port === 'tls' ? 'tls' : 'tcp';
    if (turn && port === 'tls' && (socket as TLSSocket).alpnProtocol === ALPN_TURN) {
      this.countConnection.inc({ port, kind: 'turn' });
      turn.acceptStream(socket, transport);
      return;
    }
    const silent = () => socket.destroy();
    socket.setTimeout(this.firstByteMs, silent);
    socket.once('readable', () => {
      const chunk: Buffer | null = socket.read();
      if (!chunk) {
        socket.destroy();
        return;
      }
      // Whoever takes the connection sets its own timeouts: this listener must not outlive it.
      socket.setTimeout(0);
      socket.off('timeout', silent);
      socket.unshift(chunk);
      if (turn && (chunk[0] ?? 0xff) <= 0x03) {
        this.countConnection.inc({ port, kind: 'turn' });
        turn.acceptStream(socket, transport);
        return;
      }
      this.countConnection.inc({ port, kind: 'http' });
      const http = port === 'plain' ? (this.options.plain ?? this.options.app) : this.options.app;
      http.emit('connection', socket);
    });
  }
}

function listenOn(server: Server, at: ListenAddress): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : at.port);
    });
  });
}
