/**
 * `rtcmesh forward [BIND:]PORT PEER SERVICE` and `node.forward()`: each TCP connection accepted
 * on the local port becomes its own stream to PEER's SERVICE (tcp-bridge.ts). Every connection
 * dials anew, so a peer that restarted is simply dialed again by the next one.
 */
import { createServer, type Socket } from 'node:net';
import type { Logger } from '../../core/node/logger.ts';
import type { MeshStream } from '../../core/node/stream.ts';
import { DEFAULT_MAX_CONNECTIONS } from './expose.ts';
import { bridge } from './tcp-bridge.ts';

export interface ForwardOptions {
  /** The local port (0: any free one; see `handle.port`). */
  port: number;
  /** The local address to listen on (default 127.0.0.1). */
  host?: string;
  /** The peer: node ID or mesh IPv6. */
  peer: string;
  service: string;
  /** Connections open at once; more are reset (default 256). */
  maxConnections?: number;
  /** How long one connection's dial may take (default 30 s). */
  dialTimeoutMs?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ForwardHandle {
  readonly host: string;
  /** The port listened on. */
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  /** Stops listening and resets this forward's connections (only those). */
  close(): Promise<void>;
}

type Dial = (
  peer: string,
  service: string,
  options: { signal?: AbortSignal },
) => Promise<MeshStream>;

const DEFAULT_DIAL_TIMEOUT_MS = 30_000;

export async function forward(
  dial: Dial,
  options: ForwardOptions,
  fallbackLog: Logger,
): Promise<ForwardHandle> {
  const { peer, service } = options;
  const host = options.host ?? '127.0.0.1';
  const log = options.logger ?? fallbackLog;
  const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  const sockets = new Set<Socket>();
  const stopping = new AbortController();
  const name = `${peer.slice(0, 12)}…/${service}`;
  // Connections arriving together while no link exists would each ring the peer (and the
  // gateway refuses too many calls ringing): they wait for the one dial in flight, whose link
  // the rest then reuse.
  let inFlight: Promise<unknown> | undefined;
  const dialShared = async (signal: AbortSignal): Promise<MeshStream> => {
    if (inFlight) await inFlight.catch(() => {});
    signal.throwIfAborted();
    if (inFlight) return dial(peer, service, { signal });
    const attempt = dial(peer, service, { signal });
    inFlight = attempt;
    const settled = () => {
      if (inFlight === attempt) inFlight = undefined;
    };
    attempt.then(settled, settled);
    return attempt;
  };

  const server = createServer({ allowHalfOpen: true }, (socket) => {
    // Until bridged: a client that resets while we dial must not throw.
    socket.on('error', () => {});
    if (sockets.size >= max) {
      log.warn(`${name}: reset a connection: ${max} are open (the limit)`);
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const gone = new AbortController();
    socket.once('close', () => gone.abort(new Error('the local connection closed')));
    const signal = AbortSignal.any([
      stopping.signal,
      gone.signal,
      AbortSignal.timeout(dialTimeoutMs),
    ]);
    dialShared(signal).then(
      (stream) => {
        if (socket.destroyed) return stream.close();
        log.debug(`${name}: connection from ${socket.remoteAddress}:${socket.remotePort} carried`);
        void bridge(socket, stream, {
          onReset: (why) => log.debug(`${name}: a connection was reset: ${why}`),
          onRemoteError: (message) => log.warn(`${name}: ${message}`),
        });
      },
      (err: unknown) => {
        if (!socket.destroyed) {
          log.warn(`${name}: could not reach the peer: ${(err as Error).message}`);
          socket.resetAndDestroy();
        }
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error(`${name}: ${err.message}`));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;

  let closed: Promise<void> | undefined;
  const handle: ForwardHandle = {
    host,
    port,
    get connections() {
      return sockets.size;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        options.signal?.removeEventListener('abort', onAbort);
        stopping.abort(new Error('the forward is closing'));
        for (const socket of sockets) socket.resetAndDestroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
  const onAbort = () => void handle.close();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) void handle.close();
  return handle;
}
