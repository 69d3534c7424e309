/**
 * The CLI node: the same MeshNode as the browser's, on node-datachannel, with its identity
 * in a data directory (`rtcmesh node`, `rtcmesh listen`, `rtcmesh dial`).
 */
import { spawn } from 'node:child_process';
import { DialError } from '../core/node/errors.ts';
import type { Logger } from '../core/node/logger.ts';
import type { AcceptPolicy } from '../core/node/mesh-node.ts';
import { describePath } from '../core/node/rtc.ts';
import type { MeshStream } from '../core/node/stream.ts';
import {
  connectNode,
  DEFAULT_GATEWAY,
  DEFAULT_NODE_DATA,
  type ExposeOptions,
  type ForwardOptions,
  type MeshNodeHandle,
} from './index.ts';
import { KNOWN_PEERS_FILE, type KnownPeer, loadKnownPeers } from './known-peers.ts';
import { pumpIn, pumpOut } from './pipe.ts';

export { DEFAULT_GATEWAY, DEFAULT_NODE_DATA };

export interface CliNodeOptions {
  /** None: find one on the LAN (DESIGN "The disconnected mesh"). */
  gateway: string | undefined;
  /** With no gateway: run the LAN's gateway in this process when none answers. */
  mayServe: boolean;
  dataDir: string;
  accept: AcceptPolicy;
  /** Peers the `known` policy accepts. */
  known: readonly string[];
  name?: string;
  /** How long to wait for a gateway (the library's default when not given). */
  connectTimeoutMs?: number;
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
    ...(options.gateway ? { gateway: options.gateway } : { lan: { mayServe: options.mayServe } }),
    dataDir: options.dataDir,
    accept: options.accept,
    known: options.known,
    ...(options.name ? { name: options.name } : {}),
    ...(options.connectTimeoutMs !== undefined
      ? { connectTimeoutMs: options.connectTimeoutMs }
      : {}),
    ...(options.signaling ? { signaling: options.signaling } : {}),
    // "ask" declines (the library logs each decline): nobody at a terminal to ask.
    onCall: () => 'decline',
    logger: stderrLogger,
  });
}

/**
 * A node that stays online with no gateway named waits as long as it takes for its LAN to
 * have one (one may be elected, or switched on, later); `dial` gives up after the default.
 */
function waitingForLan(options: CliNodeOptions): CliNodeOptions {
  return options.gateway ? options : { ...options, connectTimeoutMs: Number.POSITIVE_INFINITY };
}

/** One line per kept peer: ID, mesh IPv6, when last linked, and its name if it gave one. */
export function formatKnownPeer(peer: KnownPeer): string {
  const name = peer.name !== undefined ? `  ${JSON.stringify(peer.name)}` : '';
  return `${peer.id}  ${peer.ip6}  linked ${new Date(peer.linkedAt).toISOString()}${name}`;
}

/** `rtcmesh peers`: the peers this node has linked with, from its data directory alone. */
export async function runPeers(dataDir: string): Promise<void> {
  const peers = await loadKnownPeers(dataDir, log);
  if (!peers.length) log(`no known peers in ${dataDir} (${KNOWN_PEERS_FILE})`);
  for (const peer of peers) console.log(formatKnownPeer(peer));
}

/** `rtcmesh node`: stay online and reachable. */
export async function runNode(options: CliNodeOptions): Promise<void> {
  // Before any gateway answers (there may be none for a while): who this node knows. The
  // library reports a refused file or record itself.
  const known = await loadKnownPeers(options.dataDir, () => {});
  for (const peer of known) log(`known peer ${formatKnownPeer(peer)}`);
  const node = await startCliNode(waitingForLan(options));
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
  const node = await startCliNode(waitingForLan(options));
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

/** How long a served stream waits for the dialer to close it after the command's output. */
const PEER_CLOSE_WAIT_MS = 10_000;

async function serveWithCommand(stream: MeshStream, command: string): Promise<void> {
  const child = spawn(command, { shell: true, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const toChild = pumpOut(stream, child.stdin).finally(() => child.stdin.end());
  const fromChild = pumpIn(child.stdout, stream);
  stream.onClose(() => child.kill('SIGTERM'));
  await Promise.all([toChild, fromChild, exited]);
  // The dialer closes once it has read our end of input; closing first could overtake the
  // tail still in flight (lost under load), so only a peer that never closes is closed on.
  await Promise.race([
    new Promise<void>((resolve) => stream.onClose(resolve)),
    new Promise((resolve) => setTimeout(resolve, PEER_CLOSE_WAIT_MS)),
  ]);
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
  const path = await stream.path().catch(() => undefined);
  if (path) log(`${service}: path ${describePath(path)}`);
  const closed = new Promise<void>((resolve) => stream.onClose(resolve));
  // Done when the peer has ended its input (or closed), and ours has been sent. A peer that
  // closes may still have messages queued here: they are written out before we stop.
  const output = pumpOut(stream, process.stdout);
  await Promise.race([
    Promise.all([pumpIn(process.stdin, stream), output]),
    closed.then(() => output),
  ]);
  stream.close();
  await node.close();
  return 0;
}

/** `rtcmesh expose SERVICE HOST:PORT`: serve a TCP port to peers. */
export async function runExpose(
  options: CliNodeOptions,
  service: string,
  target: ExposeOptions,
): Promise<void> {
  const node = await startCliNode(options);
  node.expose(service, target);
  log(
    `exposing ${target.host}:${target.port} as ${service}${target.http ? ' (HTTP: the app can open it)' : ''} (accept: ${options.accept})`,
  );
  await untilSignal();
  await node.close();
}

/** `rtcmesh forward [BIND:]PORT PEER SERVICE`: a local port whose connections go to a peer. */
export async function runForward(options: CliNodeOptions, target: ForwardOptions): Promise<void> {
  const node = await startCliNode(options);
  const forward = await node.forward(target);
  log(`forwarding ${forward.host}:${forward.port} to ${target.peer} ${target.service}`);
  await untilSignal();
  await node.close();
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
