/** The window: renders this device's node and drives what only a window can do. */
import './style.css';
import { loadOrRenewCertificate } from './certificate.ts';
import { connectToNode } from './node-connection.ts';
import { registerServiceWorker } from './service-worker.ts';

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

async function start(): Promise<void> {
  wireCopyButtons();
  registerServiceWorker((apply) => {
    const banner = $('#update');
    banner.hidden = false;
    $<HTMLButtonElement>('#update-reload').addEventListener('click', apply, { once: true });
  });

  const { node } = await connectToNode();
  const certificate = await loadOrRenewCertificate();
  const summary = await node.useCertificate(certificate.fingerprints, certificate.expires);

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
  document.body.dataset.ready = 'true';
}

start().catch((err: unknown) => {
  console.error(err);
  showError(`rtcmesh could not start: ${err instanceof Error ? err.message : String(err)}`);
});
