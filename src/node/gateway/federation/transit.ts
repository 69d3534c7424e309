/**
 * TURN chaining (docs/design.md §9 "Three gateways in a chain"): a middle gateway runs transit
 * TURN servers, each listening on the backbone facing one peer and relaying from its address
 * on another backbone; the peer gateway forwards UDP from its own LAN to that server verbatim
 * (TransitForwarder), so its nodes can allocate on the middle gateway without reaching it.
 * A relay address on the far backbone then meets the far gateway's relay there.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from '../../log.ts';

/** Clients one forwarder serves at once (one upstream socket each, so 5-tuples stay apart). */
const MAX_CLIENTS = 1024;
/** A client silent this long loses its upstream socket (TURN refreshes every few minutes). */
const IDLE_MS = 10 * 60_000;

interface Client {
  socket: Socket;
  lastSeen: number;
}

/** Forwards UDP between this gateway's LAN (`listenHost`) and one upstream TURN server. */
export class TransitForwarder {
  private readonly clients = new Map<string, Client>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private closed = false;

  private constructor(
    private readonly downstream: Socket,
    readonly upstream: { host: string; port: number },
    private readonly logger: Logger,
  ) {
    downstream.on('message', (msg, from) => this.fromClient(msg, from.address, from.port));
    downstream.on('error', (err) => logger.warn({ err }, 'transit forwarder socket error'));
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  static async start(
    listenHost: string,
    upstream: { host: string; port: number },
    logger: Logger,
  ): Promise<TransitForwarder> {
    const socket = createSocket(listenHost.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, listenHost, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new TransitForwarder(socket, upstream, logger);
  }

  get port(): number {
    return this.downstream.address().port;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const c of this.clients.values()) c.socket.close();
    this.clients.clear();
    this.downstream.close();
  }

  private fromClient(msg: Buffer, address: string, port: number): void {
    if (this.closed) return;
    const key = `${address}|${port}`;
    let client = this.clients.get(key);
    if (!client) {
      if (this.clients.size >= MAX_CLIENTS) return;
      const socket = createSocket(this.upstream.host.includes(':') ? 'udp6' : 'udp4');
      socket.on('message', (reply, from) => {
        // Only the upstream server's answers go back.
        if (from.port !== this.upstream.port || from.address !== this.upstream.host) return;
        if (!this.closed) this.downstream.send(reply, port, address);
      });
      socket.on('error', (err) => this.logger.debug({ err }, 'transit upstream socket error'));
      client = { socket, lastSeen: 0 };
      this.clients.set(key, client);
    }
    client.lastSeen = Date.now();
    client.socket.send(msg, this.upstream.port, this.upstream.host);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, c] of this.clients)
      if (now - c.lastSeen > IDLE_MS) {
        c.socket.close();
        this.clients.delete(key);
      }
  }
}
