/**
 * rtcmesh as a library for Node apps: a mesh node with its identity in a data directory.
 *
 *   import { connectNode } from 'rtcmesh';
 *   const node = await connectNode({ gateway: 'http://127.0.0.1:8080', dataDir: './node' });
 *   node.listen('echo', (stream) => …);
 *   const stream = await node.dial(peerId, 'echo');
 *   await node.close();
 *
 * A node owns its gateway session and its peer connections and nothing else: closing it (or
 * aborting its `signal`) closes only those, so any number of nodes, and a gateway, can share
 * a process. The library writes nothing to stdout or stderr; give it a `logger` to hear from
 * it. The `rtcmesh node`, `listen` and `dial` commands are built on it.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { NodeId, VerifiedRecord } from '../core/identity/index.ts';
import { GatewayConnectError } from '../core/node/errors.ts';
import type { GatewayStatus, SignalingMode } from '../core/node/gateway-client.ts';
import { type Logger, silentLogger } from '../core/node/logger.ts';
import {
  type AcceptPolicy,
  type DialOptions,
  decideByPolicy,
  MeshNode,
} from '../core/node/mesh-node.ts';
import type { MeshStream } from '../core/node/stream.ts';
import { loadOrCreateCertificate } from './certificate-store.ts';
import type { LanDiscovery } from './discovery/lan-discovery.ts';
import { type LanMode, type LanModeOptions, startLanMode } from './discovery/lan-mode.ts';
import { loadKnownGateways, saveKnownGateways } from './gateway-store.ts';
import { installNodeIdentityCrypto } from './identity-crypto.ts';
import { loadOrCreateIdentity } from './identity-store.ts';
import { type KnownPeer, loadKnownPeers, saveKnownPeers, withPeer } from './known-peers.ts';
import { nodeRtcPlatform } from './rtc-platform.ts';
import { type ExposeHandle, type ExposeOptions, expose } from './services/expose.ts';
import { type ForwardHandle, type ForwardOptions, forward } from './services/forward.ts';

export * from '../core/api/index.ts';
export * from '../core/node/index.ts';
export { consoleLogger, type Logger, silentLogger } from '../core/node/logger.ts';
export type { KnownPeer } from './known-peers.ts';
export type { ExposeHandle, ExposeOptions } from './services/expose.ts';
export type { ForwardHandle, ForwardOptions } from './services/forward.ts';

export const DEFAULT_GATEWAY = 'http://127.0.0.1:8080';
export const DEFAULT_NODE_DATA = join(homedir(), '.rtcmesh');
export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
/** With LAN discovery a gateway may first have to be elected and started. */
export const DEFAULT_LAN_CONNECT_TIMEOUT_MS = 45_000;
export type { HeardGateway, LanDiscovery } from './discovery/lan-discovery.ts';
export type { LanModeOptions } from './discovery/lan-mode.ts';

/** An incoming call, as `onCall` and the `call` event see it: who calls, checked. */
export interface CallRecord {
  readonly dialId: string;
  /** The caller's ID (checked: its signed record matches its DTLS certificate). */
  readonly id: NodeId;
  readonly ip6: string;
  /** The name in the caller's record, if it gave one. */
  readonly name?: string;
  /** Whether the caller is in `known`. */
  readonly known: boolean;
}

export type CallAnswer = 'accept' | 'decline';

export interface ConnectNodeOptions {
  /** The gateway (default http://127.0.0.1:8080); in cluster mode, any of the cluster. */
  gateway?: string;
  /**
   * No `gateway`: find one on the LAN by multicast (true, or options, e.g. `mayServe` to run
   * the LAN's gateway in this process when none answers). Each gateway found must prove the
   * ID it announced on the session.
   */
  lan?: boolean | LanModeOptions;
  /**
   * Where the node key, certificate, known gateways and known peers' records live (default
   * ~/.rtcmesh).
   */
  dataDir?: string;
  /**
   * Incoming calls: `everyone`, `known` (the `known` list) or `ask` (`onCall` decides). The
   * default is `ask` when `onCall` is given, else `known`. `ask` without `onCall` is refused.
   */
  accept?: AcceptPolicy;
  /** Peers the `known` policy accepts (node IDs). */
  known?: readonly string[];
  /** A name peers see in this node's record. */
  name?: string;
  /** Decides the calls the policy leaves to ask (with the default policy: every call). */
  onCall?: (call: CallRecord) => CallAnswer | Promise<CallAnswer>;
  /** Aborting it closes the node (before it is connected: connectNode rejects). */
  signal?: AbortSignal;
  /** Where diagnostics go (console and pino loggers fit); default: nowhere. */
  logger?: Logger;
  /**
   * How long connectNode waits for the gateway (and the others of its cluster); Infinity:
   * until one answers.
   */
  connectTimeoutMs?: number;
  /** Bind the node's WebRTC sockets to this address (e.g. 127.0.0.1); default: all. */
  bindAddress?: string;
  /**
   * How the node signals. `auto` (default): over its WebRTC session with the gateway, and
   * when that cannot be made but the gateway answers over HTTP (UDP blocked), over HTTPS:
   * calls by long-poll (GET /v1/dials), dials by POST /v1/dial. `http`: HTTPS only, no
   * session. `session`: the session only (retried until it works).
   */
  signaling?: 'auto' | 'session' | 'http';
}

export interface MeshNodeHandleEvents {
  /** The gateway session: connecting, connected, reconnecting, offline. */
  status: (status: GatewayStatus, detail: string) => void;
  /** An incoming call and what was answered. */
  call: (call: CallRecord, answer: CallAnswer) => void;
  /** A peer connection opened (dialed or answered). */
  link: (peer: VerifiedRecord, direction: 'outgoing' | 'incoming') => void;
  /** The node closed (by close() or its signal). */
  close: () => void;
}

/** A running mesh node: what connectNode gives. */
export interface MeshNodeHandle {
  readonly id: NodeId;
  /** The mesh IPv6 address peers may dial instead of the ID. */
  readonly ip6: string;
  /** The gateway session's state. */
  readonly status: GatewayStatus;
  /** How the node signals: its WebRTC session, or HTTPS (long-poll accept, HTTP dial). */
  readonly signaling: SignalingMode;
  /** The gateway in use (in cluster mode another of the cluster while the given one is down). */
  readonly gatewayUrl: string;
  /**
   * With `lan`: the LAN discovery, whose `gateway` event reports each gateway heard (its
   * announcement's signature checked; its session not yet): a hook for federation.
   */
  readonly lanDiscovery: LanDiscovery | undefined;
  /** With `lan.mayServe`: the URL of the gateway this process serves now, if it does. */
  readonly servingUrl: string | undefined;
  /**
   * The peers this node has linked with, the most recent first (kept in the data directory,
   * each record checked again when read back).
   */
  readonly knownPeers: readonly KnownPeer[];
  /** Opens a stream to `service` on `peer` (a node ID or mesh IPv6), reusing an open link. */
  dial(peer: string, service: string, options?: DialOptions): Promise<MeshStream>;
  /** Serves `service`: `handler` gets every stream a peer opens to it; returns a remover. */
  listen(service: string, handler: (stream: MeshStream) => void): () => void;
  /**
   * Serves `service` from a TCP port: each stream a peer opens becomes a connection to
   * `host:port` (`http`: the app's web requests too). Closed with the node.
   */
  expose(service: string, options: ExposeOptions): ExposeHandle;
  /**
   * Listens on a local TCP port: each connection becomes a stream to `peer`'s `service`.
   * Resolves once listening; closed with the node.
   */
  forward(options: ForwardOptions): Promise<ForwardHandle>;
  on<K extends keyof MeshNodeHandleEvents>(event: K, listener: MeshNodeHandleEvents[K]): () => void;
  /** Closes this node's gateway session and peer connections (only this node's). */
  close(): Promise<void>;
}

/** Never contacted: with LAN discovery the locator replaces it before the first attempt. */
const LAN_PLACEHOLDER = 'http://lan.invalid';

/** The options as given, checked, with the defaults filled in. */
function resolveOptions(options: ConnectNodeOptions) {
  const accept = options.accept ?? (options.onCall ? 'ask' : 'known');
  if (accept !== 'everyone' && accept !== 'known' && accept !== 'ask')
    throw new TypeError(`accept must be everyone, known or ask, not "${String(accept)}"`);
  if (accept === 'ask' && !options.onCall)
    throw new TypeError(
      "accept: 'ask' needs an onCall option to ask (or use accept: 'known' or 'everyone')",
    );
  if (options.lan && options.gateway)
    throw new TypeError('give a gateway or lan, not both (lan finds the gateway)');
  const lan = options.lan === true ? {} : options.lan || undefined;
  return {
    gateway: options.gateway ?? DEFAULT_GATEWAY,
    lan,
    dataDir: options.dataDir ?? DEFAULT_NODE_DATA,
    accept,
    known: new Set(options.known ?? []),
    log: options.logger ?? silentLogger,
    connectTimeoutMs:
      options.connectTimeoutMs ??
      (lan ? DEFAULT_LAN_CONNECT_TIMEOUT_MS : DEFAULT_CONNECT_TIMEOUT_MS),
  };
}

/** Makes (or loads) the node's identity, connects to the gateway, resolves when connected. */
export async function connectNode(options: ConnectNodeOptions = {}): Promise<MeshNodeHandle> {
  const { gateway, lan, dataDir, accept, known, log, connectTimeoutMs } = resolveOptions(options);
  options.signal?.throwIfAborted();
  installNodeIdentityCrypto();
  const { identity, keyFile } = await loadOrCreateIdentity(dataDir);
  const certificate = await loadOrCreateCertificate(dataDir, identity);
  let knownPeers = await loadKnownPeers(dataDir, (message) => log.warn(message));
  /** Writes one after another, the last list last; close() waits for them. */
  let keeping: Promise<void> = Promise.resolve();
  const keepPeer = (record: VerifiedRecord) => {
    knownPeers = withPeer(knownPeers, record);
    const peers = knownPeers;
    keeping = keeping
      .then(() => saveKnownPeers(dataDir, peers))
      .catch((err: unknown) =>
        log.warn(`could not keep the peers' records: ${(err as Error).message}`),
      );
  };
  options.signal?.throwIfAborted();
  const listeners: { [K in keyof MeshNodeHandleEvents]: Set<MeshNodeHandleEvents[K]> } = {
    status: new Set(),
    call: new Set(),
    link: new Set(),
    close: new Set(),
  };
  const emit = <K extends keyof MeshNodeHandleEvents>(
    event: K,
    ...args: Parameters<MeshNodeHandleEvents[K]>
  ) => {
    for (const l of listeners[event]) {
      try {
        (l as (...a: typeof args) => void)(...args);
      } catch (err) {
        log.error(`a ${event} listener threw: ${(err as Error).message}`);
      }
    }
  };
  const decide = async (caller: VerifiedRecord, dialId: string): Promise<CallAnswer> => {
    const call: CallRecord = {
      dialId,
      id: caller.id,
      ip6: caller.ip6,
      ...(caller.name !== undefined ? { name: caller.name } : {}),
      known: known.has(caller.id),
    };
    const byPolicy = decideByPolicy(accept, call.known);
    let answer: CallAnswer;
    if (byPolicy !== 'ask') answer = byPolicy;
    else {
      try {
        answer = (await options.onCall?.(call)) === 'accept' ? 'accept' : 'decline';
      } catch (err) {
        log.warn(`onCall failed, declining ${caller.id}: ${(err as Error).message}`);
        answer = 'decline';
      }
    }
    if (answer === 'decline') log.info(`declined a call from ${caller.id} (accept: ${accept})`);
    emit('call', call, answer);
    return answer;
  };
  let lanMode: LanMode | undefined;
  if (lan) {
    lanMode = await startLanMode({ dataDir, identity, lan, logger: log });
    if (options.signal?.aborted) {
      await lanMode.close();
      options.signal.throwIfAborted();
    }
  }
  const node = new MeshNode({
    // With LAN discovery the locator names the gateway before every attempt.
    gatewayUrl: lanMode ? LAN_PLACEHOLDER : gateway,
    ...(lanMode ? { locate: lanMode.locate, onLocatedFailed: lanMode.distrust } : {}),
    // Cluster mode: the others, should `gateway` be the one that is down.
    ...(lanMode
      ? {}
      : {
          knownGateways: await loadKnownGateways(dataDir, gateway),
          onGateways: (urls: string[]) =>
            void saveKnownGateways(dataDir, gateway, urls).catch((err: unknown) =>
              log.warn(`could not keep the cluster's gateways: ${(err as Error).message}`),
            ),
        }),
    identity,
    fingerprints: [certificate.fingerprint],
    rtc: nodeRtcPlatform({
      certFile: certificate.certFile,
      keyFile,
      logger: log,
      ...(options.bindAddress ? { bindAddress: options.bindAddress } : {}),
    }),
    ...(options.name ? { name: options.name } : {}),
    decide,
    logger: log,
    ...(options.signaling !== 'session'
      ? { httpSignaling: options.signaling === 'http' ? 'only' : 'fallback' }
      : {}),
  });

  let closed: Promise<void> | undefined;
  const onAbort = () => void handle.close();
  const services = new Set<{ close(): unknown }>();
  const owned = <T extends { close(): unknown }>(service: T): T => {
    services.add(service);
    const close = service.close.bind(service);
    return Object.assign(service, {
      close: () => {
        services.delete(service);
        return close();
      },
    });
  };
  const handle: MeshNodeHandle = {
    id: identity.id,
    ip6: identity.ip6,
    get status() {
      return node.gateway.status;
    },
    get signaling() {
      return node.gateway.mode;
    },
    get gatewayUrl() {
      return node.gateway.gatewayUrl;
    },
    lanDiscovery: lanMode?.discovery,
    get servingUrl() {
      return lanMode?.election?.gateway?.url;
    },
    get knownPeers() {
      return knownPeers;
    },
    dial: (peer, service, dialOptions = {}) => node.dial(peer, service, dialOptions),
    listen: (service, handler) => node.listen(service, handler),
    expose: (service, exposeOptions) =>
      owned(expose((name, handler) => node.listen(name, handler), service, exposeOptions, log)),
    forward: async (forwardOptions) =>
      owned(
        await forward(
          (peer, service, dialOptions) => node.dial(peer, service, dialOptions),
          forwardOptions,
          log,
        ),
      ),
    on: (event, listener) => {
      listeners[event].add(listener);
      return () => listeners[event].delete(listener);
    },
    close: () => {
      closed ??= (async () => {
        options.signal?.removeEventListener('abort', onAbort);
        await Promise.all([...services].map((service) => service.close()));
        node.stop();
        await lanMode?.close();
        await keeping;
        // Let the closes reach the native side before saying done.
        await new Promise((resolve) => setImmediate(resolve));
        log.debug(`node ${identity.id} closed`);
        emit('close');
      })();
      return closed;
    },
  };

  let connectedOnce = false;
  let toldWhyNot = false;
  node.on('status', (status, detail) => {
    if (status === 'connected' && connectedOnce)
      log.info(`connected again to ${node.gateway.gatewayUrl}`);
    else if (status === 'reconnecting' && connectedOnce) log.warn(detail);
    else if (status === 'reconnecting' && !toldWhyNot && !lanMode) {
      // The first failure is worth saying at once: the wait for the gateway may be long.
      toldWhyNot = true;
      log.warn(
        `${detail}${Number.isFinite(connectTimeoutMs) ? ` (trying for ${connectTimeoutMs / 1000} s)` : ''}`,
      );
    } else log.debug(`gateway ${status}: ${detail}`);
    emit('status', status, detail);
  });
  node.on('link', (link) => {
    keepPeer(link.peer);
    emit('link', link.peer, link.direction);
  });
  // A gateway appeared while the session is down (one was just elected): try it now rather
  // than after the backoff.
  lanMode?.discovery.on('gateway', () => {
    if (node.gateway.status === 'reconnecting') node.gateway.reconnectNow();
  });

  const connected = new Promise<void>((resolve, reject) => {
    const fail = () => {
      const why = node.gateway.lastProblem;
      if (lanMode) {
        reject(
          new GatewayConnectError(
            `no gateway on this LAN proved itself in ${connectTimeoutMs / 1000} s`,
            why,
          ),
        );
        return;
      }
      const others = node.gateway.knownGateways.filter((url) => url !== gateway);
      reject(
        new GatewayConnectError(
          `could not reach the gateway at ${gateway}${
            others.length ? ` nor the others of its cluster (${others.join(', ')})` : ''
          } in ${connectTimeoutMs / 1000} s`,
          why,
        ),
      );
    };
    // Infinity: as long as it takes (a long-running node waiting for its LAN's gateway).
    const timer = Number.isFinite(connectTimeoutMs)
      ? setTimeout(fail, connectTimeoutMs)
      : undefined;
    const off = node.on('status', (status) => {
      if (status !== 'connected') return;
      clearTimeout(timer);
      off();
      resolve();
    });
    options.signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(options.signal?.reason);
      },
      { once: true },
    );
  });
  options.signal?.addEventListener('abort', onAbort, { once: true });
  node.start();
  try {
    await connected;
  } catch (err) {
    await handle.close();
    throw err;
  }
  connectedOnce = true;
  log.info(
    `node ${identity.id} (${identity.ip6}) connected to ${node.gateway.gatewayUrl}${
      node.gateway.mode === 'http'
        ? ' in HTTP mode (no WebRTC session: calls by HTTPS long-poll, dials over HTTP)'
        : ''
    }`,
  );
  return handle;
}

/** @deprecated Use `node.close()`. */
export function closeNode(node: MeshNodeHandle): Promise<void> {
  return node.close();
}
