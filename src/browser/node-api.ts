/**
 * The contract between the windows and the node worker (DESIGN §6): what the worker offers
 * every tab over comlink, what each tab offers back, and the Web Locks they coordinate with.
 * One node serves all tabs: a tab attaches with its events, the elected RTC host tab lends
 * its peer connections, and streams reach tabs as transferred ports.
 */
import type { VerifiedRecord } from '../core/identity/index.ts';
import { DialError } from '../core/node/errors.ts';
import type { GatewayStatus } from '../core/node/gateway-client.ts';
import type { DialProgress } from '../core/node/mesh-node.ts';
import type { PathInfo } from '../core/node/rtc.ts';
import type { StreamOptions } from '../core/node/stream.ts';
import type { PushSubscriptionJson, RegisterResponse } from '../core/protocol/messages.ts';
import type { IdentitySummary } from './db.ts';
import type { ChannelHandOver } from './port-channel.ts';
import type { RtcHostApi } from './rtc-host-api.ts';

export type { IdentitySummary };

export interface NodeStatus {
  status: GatewayStatus;
  detail: string;
  gatewayId: string | null;
  /** The gateway in use (in cluster mode, possibly another than the page's own). */
  gatewayUrl: string | null;
}

/** A peer link; `serial` tells one link to a peer from the next. */
export interface LinkInfo {
  serial: number;
  peer: VerifiedRecord;
  direction: 'outgoing' | 'incoming';
}

/** A stream handed to a tab: its data port and what it runs on. */
export interface StreamHandle {
  peer: VerifiedRecord;
  service: string;
  link: number;
  channel: ChannelHandOver;
}

export interface CallInfo {
  dialId: string;
  from: VerifiedRecord;
}

/** Each tab's side (a comlink proxy the worker calls). */
export interface TabEvents {
  status(status: NodeStatus): void;
  link(link: LinkInfo): void;
  linkClosed(serial: number): void;
  /**
   * A call to ask the user about: sent to one tab only. The worker decides every other call
   * by itself, from the settings and contacts in IndexedDB.
   */
  incoming(call: CallInfo): void;
  incomingCancelled(dialId: string, reason: string): void;
  /** A stream a peer opened to a service this tab listens to. */
  stream(stream: StreamHandle): void;
}

/** What the node is doing, for the console (`await rtcmesh.node.inspect()`) and tests. */
export interface NodeInspection {
  status: NodeStatus;
  hostTab: string | null;
  gatewayStarted: boolean;
  /** The gateways the node fails over between (its own first; cluster mode adds the rest). */
  gateways: readonly string[];
  tabs: string[];
  links: { peer: string; open: boolean; streams: number }[];
  handedStreams: number;
}

export interface NodeApi {
  /** This device's node identity, made on first use. */
  identity(): Promise<IdentitySummary>;
  /** The window made or renewed the DTLS certificate: records must list these fingerprints. */
  useCertificate(fingerprints: string[], expires: number): Promise<IdentitySummary>;
  /**
   * A tab joins; it holds the Web Lock `rtcmesh:tab:<tabId>` while it lives. Its current
   * status and open links come as events, on the same port as every later one: a reply here
   * could overtake an event sent meanwhile, and a tab would keep showing a stale status.
   */
  attach(tabId: string, events: TabEvents): Promise<void>;
  /** The tab was focused or shown: calls are announced in the most recently active tab. */
  active(tabId: string): void;
  /** The tab won the RTC host election and lends its peer connections. */
  hostReady(tabId: string, host: RtcHostApi): void;
  /** The host tab gives its role up (it is freezing or going away). */
  resignHost(tabId: string): void;
  start(): void;
  stop(): void;
  reconnectNow(): void;
  connect(callId: string, to: string, onProgress?: (p: DialProgress) => void): Promise<LinkInfo>;
  dial(
    tabId: string,
    callId: string,
    to: string,
    service: string,
    options: StreamOptions,
    onProgress?: (p: DialProgress) => void,
  ): Promise<StreamHandle>;
  /** Cancels a connect or dial in progress. */
  abort(callId: string): void;
  listen(tabId: string, service: string): void;
  unlisten(tabId: string, service: string): void;
  answer(dialId: string): Promise<LinkInfo>;
  decline(dialId: string): void;
  /** The user accepted this call on a notification: answer it as soon as it arrives. */
  expectAcceptedCall(dialId: string): void;
  /** Forgets a call accepted on a notification; true if it never arrived. */
  dropAcceptedCall(dialId: string): Promise<boolean>;
  closeLink(serial: number): void;
  path(serial: number): Promise<PathInfo | null>;
  registerPush(push: PushSubscriptionJson | null): Promise<RegisterResponse>;
  inspect(): Promise<NodeInspection>;
}

/** Names of the Web Locks tabs and the worker coordinate with. */
export const LOCKS = {
  /** Held by the node worker while it lives; a tab granted it knows the worker died. */
  worker: 'rtcmesh:node-worker',
  /** Held by the RTC host tab. */
  rtcHost: 'rtcmesh:rtc-host',
  tab: (tabId: string) => `rtcmesh:tab:${tabId}`,
  /** Where SharedWorker is missing: held by the one tab running the node. */
  node: 'rtcmesh:node',
} as const;

/** Comlink carries an Error's name and message only: a DialError's code rides in the name. */
export function errorForTab(err: unknown): unknown {
  if (err instanceof DialError) {
    const carried = new Error(err.message);
    carried.name = `DialError:${err.code}`;
    return carried;
  }
  return err;
}

export function errorFromNode(err: unknown): unknown {
  if (err instanceof Error && err.name.startsWith('DialError:'))
    return new DialError(err.name.slice('DialError:'.length) as DialError['code'], err.message);
  return err;
}
