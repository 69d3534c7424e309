/** The window: renders this device's node and uses it (DESIGN §6). */
import './style.css';
import { chatPeers } from '../browser/chat-store.ts';
import { LOCKS } from '../browser/node-api.ts';
import {
  loadSettings,
  type Settings,
  saveSettings,
  watchSettings,
} from '../browser/settings-store.ts';
import { DIAL_ERROR_TEXT, DialError } from '../core/node/errors.ts';
import type { AcceptPolicy } from '../core/node/mesh-node.ts';
import { loadOrRenewCertificate, type NodeCertificate } from './certificate.ts';
import {
  detectFeatures,
  type Features,
  fallbacksInUse,
  missingRequired,
  onFeatureChange,
} from './features.ts';
import { serveMeshPorts } from './mesh-web.ts';
import { type IncomingCallView, NodeClient } from './node-client.ts';
import { NodeWorkerHost } from './node-worker-host.ts';
import { PeersView } from './peers-view.ts';
import { PushCalls } from './push.ts';
import { electRtcHost, RtcHost } from './rtc-host.ts';
import { registerServiceWorker } from './service-worker.ts';
import { moveSettingsFromLocalStorage } from './settings.ts';
import { dialTargetFromLocation, qrSvg, shareLink } from './share.ts';

const $ = <T extends HTMLElement>(selector: string): T => {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
};

function showError(message: string): void {
  const el = $('#error');
  el.textContent = message;
  el.hidden = false;
}

function wireCopyButtons(): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>('button[data-copy]')) {
    button.addEventListener('click', async () => {
      const source = $(`#${button.dataset.copy}`);
      try {
        await navigator.clipboard.writeText(source.textContent ?? '');
        button.textContent = 'Copied';
      } catch {
        // Clipboard needs focus and permission; selecting the text still lets the user copy.
        getSelection()?.selectAllChildren(source);
        button.textContent = 'Selected';
      }
      setTimeout(() => {
        button.textContent = 'Copy';
      }, 1500);
    });
  }
}

function setDialResult(text: string, kind: 'info' | 'error' | 'ok', code = ''): void {
  const el = $('#dial-result');
  el.textContent = text;
  el.dataset.kind = kind;
  el.dataset.code = code;
}

/** Wires the page to the node: status, calls, dialing, peers, push. */
function wireNode(node: NodeClient, settings: Settings): void {
  const peers = new PeersView(
    $('#links'),
    $('#no-links'),
    $<HTMLTemplateElement>('#link-template'),
    node,
  );
  void chatPeers().then((ids) => {
    for (const peer of ids) peers.card(peer);
  });
  const pushCalls = new PushCalls(node, () =>
    setDialResult('The call you accepted is no longer waiting', 'error', 'missed'),
  );
  // The node worker decides calls itself (settings and contacts in IndexedDB); a call to
  // ask about rings in one tab (below).
  pushCalls.start($<HTMLInputElement>('#push-enabled'), $('#push-status'), settings.push);
  const status = $('#status');
  const elsewhere = $('#elsewhere');
  node.on('status', (s, detail) => {
    if (!elsewhere.hidden) return; // this tab's node is stopped: it runs in another tab
    status.textContent = s;
    status.dataset.status = s;
    status.title = detail;
  });

  let ringing: IncomingCallView | undefined;
  const incoming = $('#incoming');
  node.on('incoming', (call) => {
    ringing = call;
    $('#incoming-name').textContent = call.from.name ?? 'A node';
    $('#incoming-id').textContent = call.from.id;
    incoming.hidden = false;
  });
  node.on('incomingCancelled', (call) => {
    if (ringing === call) incoming.hidden = true;
  });
  $('#incoming-accept').addEventListener('click', () => {
    const call = ringing;
    incoming.hidden = true;
    call
      ?.accept()
      .catch((err: unknown) =>
        setDialResult(`Could not connect: ${(err as Error).message}`, 'error'),
      );
  });
  $('#incoming-decline').addEventListener('click', () => {
    incoming.hidden = true;
    ringing?.decline();
  });

  const form = $<HTMLFormElement>('#dial-form');
  const button = $<HTMLButtonElement>('#dial-button');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const to = $<HTMLInputElement>('#dial-to').value.trim();
    if (!to) return;
    button.disabled = true;
    setDialResult(`Calling ${to}…`, 'info', 'calling');
    try {
      const link = await node.connect(to, {
        onProgress: (progress) =>
          progress === 'waking'
            ? setDialResult(`Waking ${to}…`, 'info', 'waking')
            : setDialResult(`Ringing ${to}…`, 'info', 'ringing'),
      });
      setDialResult(`Connected to ${link.peer.name ?? link.id}`, 'ok', 'connected');
    } catch (err) {
      const code = err instanceof DialError ? err.code : 'gateway';
      setDialResult(`${DIAL_ERROR_TEXT[code]}: ${(err as Error).message}`, 'error', code);
    } finally {
      button.disabled = false;
    }
  });
  // Console access for debugging, and for `npm run bench` and the e2e tests.
  (
    globalThis as {
      rtcmesh?: {
        node: NodeClient;
        settings: { load: typeof loadSettings; save: typeof saveSettings };
      };
    }
  ).rtcmesh = { node, settings: { load: loadSettings, save: saveSettings } };
}

/** The settings controls: saved to IndexedDB, and kept up to date when another tab changes them. */
function wireSettings(settings: Settings): void {
  const policy = $<HTMLSelectElement>('#accept-policy');
  const relay = $<HTMLInputElement>('#relay-only');
  const show = ({ acceptPolicy, relayOnly }: Settings) => {
    policy.value = acceptPolicy;
    relay.checked = relayOnly;
  };
  show(settings);
  const save = (changes: Partial<Settings>) =>
    saveSettings(changes).catch((err: unknown) =>
      showError(`Could not save the setting: ${err instanceof Error ? err.message : String(err)}`),
    );
  policy.addEventListener(
    'change',
    () => void save({ acceptPolicy: policy.value as AcceptPolicy }),
  );
  relay.addEventListener('change', () => void save({ relayOnly: relay.checked }));
  watchSettings((keys) => {
    if (keys.includes('acceptPolicy') || keys.includes('relayOnly')) void loadSettings().then(show);
  });
}

/**
 * Without SharedWorker each tab has a node worker of its own (NodeWorkerHost), but only the
 * tab holding the node lock runs it; the others say the node is active elsewhere and offer
 * to take it over.
 */
function holdNodeInTab(node: NodeClient, certificate: NodeCertificate): void {
  const elsewhere = $('#elsewhere');
  const status = $('#status');
  let host: RtcHost | undefined;
  const request = (steal: boolean) => {
    const options: LockOptions = steal ? { steal: true } : { ifAvailable: true };
    navigator.locks
      .request(LOCKS.node, options, async (lock) => {
        if (!lock) {
          elsewhere.hidden = false;
          status.textContent = 'elsewhere';
          status.dataset.status = 'elsewhere';
          return;
        }
        elsewhere.hidden = true;
        host = new RtcHost(certificate.certificate);
        node.start();
        node.becomeHost(host);
        await new Promise(() => {}); // hold the lock while this tab runs the node
      })
      .catch(() => {
        // Another tab took the node over.
        node.resignHost();
        node.stop();
        host?.shutdown();
        host = undefined;
        elsewhere.hidden = false;
        status.textContent = 'elsewhere';
        status.dataset.status = 'elsewhere';
      });
  };
  // A closed tab's peers often never see its channels close (DESIGN §6): close them now.
  addEventListener('pagehide', () => host?.shutdown());
  $('#use-here').addEventListener('click', () => request(true));
  request(false);
}

/** Lists on the page the fallbacks this browser needs (README "Browser engines"). */
function showFeatures(features: Features): void {
  const el = $('#browser-features');
  const lines = fallbacksInUse(features);
  el.textContent = lines.length > 0 ? lines.join(' ') : 'everything rtcmesh uses';
  for (const [name, present] of Object.entries(features))
    document.body.dataset[`has${name[0]?.toUpperCase()}${name.slice(1)}`] = String(present);
}

async function start(): Promise<void> {
  wireCopyButtons();
  const features = detectFeatures();
  const missing = missingRequired(features);
  if (missing) throw new Error(missing);
  showFeatures(features);
  onFeatureChange(showFeatures);
  registerServiceWorker((apply) => {
    $('#update').hidden = false;
    $<HTMLButtonElement>('#update-reload').addEventListener('click', apply, { once: true });
  });

  const worker = new NodeWorkerHost();
  // Settings an older version left in localStorage move to IndexedDB, where the node
  // worker reads them (it decides calls by them), before the worker makes the node.
  const [certificate] = await Promise.all([
    loadOrRenewCertificate(),
    moveSettingsFromLocalStorage().catch((err: unknown) =>
      console.warn('rtcmesh: could not move the settings to IndexedDB', err),
    ),
  ]);
  const summary = await worker.start(certificate);
  const node = new NodeClient(worker);
  // The RTC host is elected before the page is drawn: the gateway session waits for a host,
  // and a push-woken start answers its call only once the session forms (docs/design.md §6).
  if (worker.shared) {
    // Marked on the page for the curious (and the tests): is this tab the RTC host?
    electRtcHost(node, certificate.certificate, LOCKS.rtcHost, (hosting) => {
      document.body.dataset.rtcHost = String(hosting);
    });
  }
  const settings = await loadSettings();

  $('#node-id').textContent = summary.id;
  $('#node-ip6').textContent = summary.ip6;
  $('#node-key').textContent = summary.publicKey;
  $('#node-fingerprint').textContent = summary.fingerprints.join('\n');
  $('#node-cert-expires').textContent = new Date(certificate.expires).toLocaleDateString(
    undefined,
    {
      dateStyle: 'medium',
    },
  );
  const link = shareLink(summary.id);
  $('#share-link').textContent = link;
  // The QR code is drawn when the share section first opens: drawing it took 0.1–0.2 s of a
  // push-woken start, before the node could join the gateway and answer (docs/design.md §6).
  const share = $('#share-qr').closest('details');
  const drawQr = () => {
    if (!share?.open) return;
    share.removeEventListener('toggle', drawQr);
    $('#share-qr').innerHTML = qrSvg(link);
  };
  share?.addEventListener('toggle', drawQr);
  wireSettings(settings);
  const prefillDial = () => {
    const target = dialTargetFromLocation();
    if (!target) return;
    const input = $<HTMLInputElement>('#dial-to');
    input.value = target;
    input.focus();
  };
  prefillDial();
  addEventListener('hashchange', prefillDial);

  wireNode(node, settings);
  serveMeshPorts(node);
  await node.attach();
  if (!worker.shared) holdNodeInTab(node, certificate);
  document.body.dataset.ready = 'true';
}

start().catch((err: unknown) => {
  console.error(err);
  showError(`rtcmesh could not start: ${err instanceof Error ? err.message : String(err)}`);
});
