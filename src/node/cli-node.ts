/**
 * The CLI node: the same MeshNode as the browser's, on node-datachannel, with its identity
 * in a data directory (`rtcmesh node`, `rtcmesh listen`, `rtcmesh dial`).
 */
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { cleanup as cleanupRtc } from 'node-datachannel';
import { DialError } from '../core/node/errors.ts';
import { type AcceptPolicy, decideByPolicy, MeshNode } from '../core/node/mesh-node.ts';
import type { MeshStream } from '../core/node/stream.ts';
import { loadOrCreateCertificate } from './certificate-store.ts';
import { loadKnownGateways, saveKnownGateways } from './gateway-store.ts';
import { loadOrCreateIdentity } from './identity-store.ts';
import { pumpIn, pumpOut } from './pipe.ts';
import { nodeRtcPlatform } from './rtc-platform.ts';

export const DEFAULT_GATEWAY = 'http://127.0.0.1:8080';
export const DEFAULT_NODE_DATA = join(homedir(), '.rtcmesh');
const CONNECT_TIMEOUT_MS = 20_000;

export interface CliNodeOptions {
  gateway: string;
  dataDir: string;
  accept: AcceptPolicy;
  /** Peers the `known` policy accepts. */
  known: readonly string[];
  name?: string;
}

const log = (text: string) => process.stderr.write(`rtcmesh: ${text}\n`);

export async function startCliNode(options: CliNodeOptions): Promise<MeshNode> {
  const { identity, keyFile } = await loadOrCreateIdentity(options.dataDir);
  const certificate = await loadOrCreateCertificate(options.dataDir, identity);
  const known = new Set(options.known);
  const node = new MeshNode({
    gatewayUrl: options.gateway,
    // Cluster mode: the others, should --gateway be the one that is down.
    knownGateways: await loadKnownGateways(options.dataDir, options.gateway),
    onGateways: (urls) =>
      void saveKnownGateways(options.dataDir, options.gateway, urls).catch((err: unknown) =>
        log(`could not keep the cluster's gateways: ${(err as Error).message}`),
      ),
    identity,
    fingerprints: [certificate.fingerprint],
    rtc: nodeRtcPlatform({ certFile: certificate.certFile, keyFile }),
    ...(options.name ? { name: options.name } : {}),
    // A terminal node cannot ask anyone: "ask" declines, and says so.
    decide: (caller) => {
      const decision = decideByPolicy(options.accept, known.has(caller.id));
      if (decision !== 'accept')
        log(`declined a call from ${caller.id} (--accept ${options.accept})`);
      return decision === 'accept' ? 'accept' : 'decline';
    },
  });
  let first = true;
  const connected = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `could not reach the gateway at ${options.gateway}${
              node.gateway.knownGateways.length > 1
                ? ` nor the others of its cluster (${node.gateway.knownGateways.slice(1).join(', ')})`
                : ''
            } in ${CONNECT_TIMEOUT_MS / 1000} s`,
          ),
        ),
      CONNECT_TIMEOUT_MS,
    );
    node.on('status', (status, detail) => {
      if (status === 'connected') {
        clearTimeout(timer);
        if (!first) log(`connected again to ${node.gateway.gatewayUrl}`);
        first = false;
        resolve();
      } else if (!first && status === 'reconnecting') log(`${detail}`);
    });
  });
  node.start();
  try {
    await connected;
  } catch (err) {
    node.stop();
    throw err;
  }
  log(`node ${identity.id} (${identity.ip6}) connected to ${node.gateway.gatewayUrl}`);
  return node;
}

export function stopCliNode(node: MeshNode): void {
  node.stop();
  cleanupRtc();
}

/** `rtcmesh node`: stay online and reachable. */
export async function runNode(options: CliNodeOptions): Promise<void> {
  const node = await startCliNode(options);
  node.on('link', (link) => log(`connected to ${link.id}`));
  await untilSignal();
  stopCliNode(node);
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
  stopCliNode(node);
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
    stopCliNode(node);
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
  stopCliNode(node);
  return 0;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
