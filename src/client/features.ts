/**
 * What this browser offers of what the app relies on (DESIGN §6, §7), found by feature
 * detection, never by user agent, in one place. Each feature has a fallback or, where the
 * app cannot work without it, a clear message on the page (README "Browser engines").
 * Window-only: the data channel probe needs RTCPeerConnection.
 */

export interface Features {
  /** WebRTC itself: without it there is no node. */
  peerConnection: boolean;
  /** A DTLS certificate the app makes and keeps (its fingerprint is in the signed record). */
  generateCertificate: boolean;
  /** IndexedDB holds the identity, certificate, settings and chats. */
  indexedDb: boolean;
  /** Web Locks elect the RTC host and guard the identity; no fallback. */
  webLocks: boolean;
  /** One node for all tabs; else a dedicated worker in the one tab holding the node lock. */
  sharedWorker: boolean;
  /** An RTCDataChannel can move to a worker; else the RTC host tab serves channels itself. */
  dataChannelTransfer: boolean;
  /** ReadableStream can be transferred. The app does not need it (streams cross as ports). */
  transferableStreams: boolean;
  /** Offline shell and push need a service worker; the app runs online without one. */
  serviceWorker: boolean;
  /** Web Push, to be woken for a call; without it calls ring only while a tab is open. */
  push: boolean;
  /**
   * A WebKit page outside a Home Screen web app (`navigator.standalone === false`): iOS and
   * iPadOS offer Web Push only to Home Screen web apps, and keep their storage past
   * Safari's 7-day cap on script-written storage for sites not visited (DESIGN §6).
   */
  homeScreenWouldHelp: boolean;
}

export type FeatureName = keyof Features;

/** The features without which the app cannot run, and what to tell the user. */
const REQUIRED: Partial<Record<FeatureName, string>> = {
  peerConnection: 'WebRTC (RTCPeerConnection)',
  generateCertificate: 'WebRTC certificates (RTCPeerConnection.generateCertificate)',
  indexedDb: 'IndexedDB',
  webLocks: 'Web Locks (navigator.locks)',
};

let detected: Features | undefined;

/** Detects once per page; later calls return the same answer. */
export function detectFeatures(): Features {
  if (detected) return detected;
  const peerConnection = typeof RTCPeerConnection !== 'undefined';
  detected = {
    peerConnection,
    generateCertificate:
      peerConnection && typeof RTCPeerConnection.generateCertificate === 'function',
    indexedDb: typeof indexedDB !== 'undefined',
    webLocks: typeof navigator.locks?.request === 'function',
    sharedWorker: typeof SharedWorker !== 'undefined',
    dataChannelTransfer: peerConnection && canTransferDataChannel(),
    transferableStreams: canTransferStreams(),
    serviceWorker: 'serviceWorker' in navigator,
    push: 'PushManager' in globalThis && 'Notification' in globalThis,
    homeScreenWouldHelp: (navigator as Navigator & { standalone?: boolean }).standalone === false,
  };
  return detected;
}

/** Records what trying found (a transfer refused despite the probe): the page says so. */
export function noteFeature(name: FeatureName, present: boolean): void {
  const features = detectFeatures();
  if (features[name] === present) return;
  features[name] = present;
  for (const listener of listeners) listener(features);
}

const listeners = new Set<(features: Features) => void>();

/** Calls `listener` when a feature turns out other than detected. */
export function onFeatureChange(listener: (features: Features) => void): void {
  listeners.add(listener);
}

/** Why the app cannot run here, or undefined when it can. */
export function missingRequired(features: Features): string | undefined {
  const missing = Object.entries(REQUIRED)
    .filter(([name]) => !features[name as FeatureName])
    .map(([, what]) => what);
  return missing.length > 0
    ? `this browser lacks ${missing.join(', ')}, which rtcmesh needs`
    : undefined;
}

/** One line per fallback in use, as the page shows them. */
export function fallbacksInUse(features: Features): string[] {
  const lines: string[] = [];
  if (!features.sharedWorker)
    lines.push('No SharedWorker: the node runs in one tab at a time (others offer "Use here").');
  if (!features.dataChannelTransfer)
    lines.push('Data channels cannot move to a worker: the RTC host tab serves them itself.');
  if (!features.serviceWorker) lines.push('No service worker: no offline start, no push.');
  else if (!features.push) lines.push('No Web Push: calls ring only while an rtcmesh tab is open.');
  return lines;
}

/**
 * Tries to move a fresh data channel through a MessagePort: engines that cannot move one
 * to a worker (Firefox ESR 140) throw DataCloneError here, as they would to the worker.
 */
function canTransferDataChannel(): boolean {
  let pc: RTCPeerConnection | undefined;
  const ports = new MessageChannel();
  try {
    pc = new RTCPeerConnection();
    const channel = pc.createDataChannel('probe');
    ports.port1.postMessage(channel, [channel as unknown as Transferable]);
    return true;
  } catch {
    return false;
  } finally {
    pc?.close();
    ports.port1.close();
    ports.port2.close();
  }
}

function canTransferStreams(): boolean {
  if (typeof ReadableStream === 'undefined') return false;
  const ports = new MessageChannel();
  try {
    const stream = new ReadableStream();
    ports.port1.postMessage(stream, [stream as unknown as Transferable]);
    return true;
  } catch {
    return false;
  } finally {
    ports.port1.close();
    ports.port2.close();
  }
}
