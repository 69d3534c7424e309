/**
 * The STUN/TURN server's UDP socket, which every client's datagrams share. Two ways to run it:
 *
 * - `batched`: native/batch-udp, a small N-API addon that receives up to 32 datagrams per
 *   system call (recvmmsg) and one callback, and sends with one `sendto` and no per-datagram
 *   objects. Node 20's dgram spends more per datagram than the relaying does (a callback, a
 *   Buffer and an `rinfo` per datagram, a 64 KiB buffer allocated and shrunk each time,
 *   design.md §7); this is the I/O only, the protocol stays in TypeScript.
 * - `dgram`: Node's own, where the addon is not built (no compiler at install, not Linux).
 *
 * Received bytes are valid only during `onDatagram`: whoever keeps them longer copies them.
 */
import type { Socket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bindUdp } from './udp.ts';

export type UdpIo = 'batched' | 'dgram';

export interface UdpListener {
  readonly io: UdpIo;
  readonly port: number;
  /** Sends one datagram; false when the system refused it (a full buffer, a bad address). */
  send(bytes: Uint8Array, port: number, address: string): boolean;
  close(): Promise<void>;
}

export type OnDatagram = (bytes: Uint8Array, address: string, port: number) => void;

export interface ListenOptions {
  host: string;
  port: number;
  /** Receive and send buffer sizes, as far as the system allows. */
  bufferBytes: number;
  onDatagram: OnDatagram;
  /** Errors of the socket after it is bound. */
  onError: (err: Error) => void;
  /** A send that failed after `send` returned true (dgram sends complete later). */
  onSendFailed: () => void;
  /** `dgram` to use Node's socket even where the addon is built. */
  io?: UdpIo;
}

export async function listenUdp(options: ListenOptions): Promise<UdpListener> {
  const addon = options.io === 'dgram' ? undefined : batchUdpAddon();
  return addon ? new BatchedListener(addon, options) : DgramListener.listen(options);
}

/** Whether this install has the batched listener, and if not, why. */
export function batchedUdpAvailable(): { available: true } | { available: false; why: string } {
  const addon = batchUdpAddon();
  return addon ? { available: true } : { available: false, why: addonProblem };
}

// ---- the addon ----

interface BatchUdpAddon {
  open(
    host: string,
    port: number,
    ipv6: boolean,
    bufferBytes: number,
    onBatch: (count: number, addresses: string[]) => void,
  ): { handle: unknown; data: ArrayBuffer; meta: Int32Array; port: number; slotBytes: number };
  send(handle: unknown, bytes: Uint8Array, port: number, address: string): number;
  close(handle: unknown): void;
}

const ADDON_PATH = join('native', 'batch-udp', 'build', 'Release', 'batch_udp.node');
let addonLoaded: BatchUdpAddon | null | undefined;
let addonProblem = '';

/** The addon, found above this file (src/node/turn in a checkout, dist/node when bundled). */
function batchUdpAddon(): BatchUdpAddon | undefined {
  if (addonLoaded !== undefined) return addonLoaded ?? undefined;
  addonLoaded = null;
  if (process.platform !== 'linux') {
    addonProblem = `batched UDP is Linux-only (this is ${process.platform})`;
    return undefined;
  }
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 5; up++, dir = dirname(dir)) {
    const path = join(dir, ADDON_PATH);
    if (!existsSync(path)) continue;
    try {
      addonLoaded = createRequire(import.meta.url)(path) as BatchUdpAddon;
      return addonLoaded;
    } catch (err) {
      addonProblem = `${path} did not load: ${(err as Error).message}`;
      return undefined;
    }
  }
  addonProblem = `${ADDON_PATH} is not built (npm run build)`;
  return undefined;
}

class BatchedListener implements UdpListener {
  readonly io = 'batched';
  readonly port: number;
  private readonly handle: unknown;
  private closed = false;

  constructor(
    private readonly addon: BatchUdpAddon,
    options: ListenOptions,
  ) {
    const onDatagram = options.onDatagram;
    let data!: ArrayBuffer;
    let meta!: Int32Array;
    let slotBytes = 0;
    const opened = addon.open(
      options.host,
      options.port,
      options.host.includes(':'),
      options.bufferBytes,
      (count, addresses) => {
        for (let i = 0; i < count; i++) {
          const bytes = new Uint8Array(data, i * slotBytes, meta[2 * i] as number);
          try {
            onDatagram(bytes, addresses[i] as string, meta[2 * i + 1] as number);
          } catch (err) {
            // One datagram's failure must not lose the rest of its batch.
            options.onError(err as Error);
          }
        }
      },
    );
    ({ data, meta, slotBytes } = opened);
    this.handle = opened.handle;
    this.port = opened.port;
  }

  send(bytes: Uint8Array, port: number, address: string): boolean {
    return this.addon.send(this.handle, bytes, port, address) === 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }
}

class DgramListener implements UdpListener {
  readonly io = 'dgram';

  private constructor(
    private readonly socket: Socket,
    private readonly afterSend: (err: Error | null) => void,
  ) {}

  static async listen(options: ListenOptions): Promise<DgramListener> {
    const socket = await bindUdp(options.host, options.port, options.onError, options.bufferBytes);
    socket.on('message', (msg, rinfo) =>
      options.onDatagram(
        new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength),
        rinfo.address,
        rinfo.port,
      ),
    );
    return new DgramListener(socket, (err) => {
      if (err) options.onSendFailed();
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(bytes: Uint8Array, port: number, address: string): boolean {
    try {
      this.socket.send(bytes, port, address, this.afterSend);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}
