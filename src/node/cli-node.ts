/**
 * The CLI node: the same MeshNode as the browser's, on node-datachannel, with its identity
 * in a data directory (`rtcmesh node`, `rtcmesh listen`, `rtcmesh dial`).
 */
import { spawn } from 'node:child_process';
import { DialError } from '../core/node/errors.ts';
import type { Logger } from '../core/node/logger.ts';
import type { AcceptPolicy } from '../core/node/mesh-node.ts';
import type { MeshStream } from '../core/node/stream.ts';
import { connectNode, DEFAULT_GATEWAY, DEFAULT_NODE_DATA, type MeshNodeHandle } from './index.ts';
import { pumpIn, pumpOut } from './pipe.ts';

export { DEFAULT_GATEWAY, DEFAULT_NODE_DATA };

export interface CliNodeOptions {
  gateway: string;
  dataDir: string;
  accept: AcceptPolicy;
  /** Peers the `known` policy accepts. */
  known: readonly string[];
  name?: string;
  /** How the node signals (ConnectNodeOptions.signaling). */
  signaling?: 'auto' | 'session' | 'http';
}

const log = (text: string) => process.stderr.write(`rtcmesh: ${text}\n`);

/** What the CLI tells its user, on stderr (debug only with RTCMESH_DEBUG=1). */
export const stderrLogger: Logger = {
  debug: (message) => {
    if (process.env.RTCMESH_DEBUG === '1') log(message);
  },
  info: log,
  warn: log,
  error: log,
};

/** The library's node, as the CLI runs it: logging to stderr, and a terminal cannot ask. */
export function startCliNode(options: CliNodeOptions): Promise<MeshNodeHandle> {
  return connectNode({
    gateway: options.gateway,
    dataDir: options.dataDir,
    accept: options.accept,
    known: options.known,
    ...(options.name ? { name: options.name } : {}),
    ...(options.signaling ? { signaling: options.signaling } : {}),
    // "ask" declines (the library logs each decline): nobody at a terminal to ask.
    onCall: () => 'decline',
    logger: stderrLogger,
  });
}

/** `rtcmesh node`: stay online and reachable. */
export async function runNode(options: CliNodeOptions): Promise<void> {
  const node = await startCliNode(options);
  node.on('link', (peer) => log(`connected to ${peer.id}`));
  await untilSignal();
  await node.close();
}

/** `rtcmesh listen SERVICE [--exec CMD]`: serve a stream service from stdio or a command. */
export async function runListen(
  options: CliNodeOptions,
  service: string,
  exec: string | undefined,
): Promise<void> {
  const node = await startCliNode(options);
  let busy = false;
  node.listen(service, (stream) => {
    log(`${service}: stream from ${stream.peer.id}`);
    if (exec) {
      void serveWithCommand(stream, exec);
      return;
    }
    // stdin can feed only one stream: later ones wait their turn by being refused.
    if (busy) {
      log(
        `${service}: refused a second stream from ${stream.peer.id} (stdin is in use; see --exec)`,
      );
      stream.close();
      return;
    }
    busy = true;
    void Promise.all([pumpIn(process.stdin, stream), pumpOut(stream, process.stdout)]).finally(
      () => {
        stream.close();
        busy = false;
      },
    );
  });
  log(`listening on ${service}${exec ? ` (each stream runs: ${exec})` : ''}`);
  await untilSignal();
  await node.close();
}

async function serveWithCommand(stream: MeshStream, command: string): Promise<void> {
  const child = spawn(command, { shell: true, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const toChild = pumpOut(stream, child.stdin).finally(() => child.stdin.end());
  const fromChild = pumpIn(child.stdout, stream);
  stream.onClose(() => child.kill('SIGTERM'));
  await Promise.all([toChild, fromChild, exited]);
  await new Promise((r) => setTimeout(r, 50));
  stream.close();
}

/** `rtcmesh dial PEER SERVICE`: pipe stdin and stdout through a stream to a peer's service. */
export async function runDial(
  options: CliNodeOptions,
  peer: string,
  service: string,
): Promise<number> {
  const node = await startCliNode(options);
  let stream: MeshStream;
  try {
    stream = await node.dial(peer, service, {
      // The peer has no session: the gateway is waking it by push (DESIGN §2).
      onProgress: (progress) => progress === 'waking' && log(`waking ${peer}…`),
    });
  } catch (err) {
    log(`${err instanceof DialError ? `${err.code}: ` : ''}${(err as Error).message}`);
    await node.close();
    return 1;
  }
  log(`${service}: connected to ${stream.peer.id}`);
  const closed = new Promise<void>((resolve) => stream.onClose(resolve));
  // Done when the peer has ended its input (or closed), and ours has been sent.
  await Promise.race([
    Promise.all([pumpIn(process.stdin, stream), pumpOut(stream, process.stdout)]),
    closed,
  ]);
  stream.close();
  await node.close();
  return 0;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
