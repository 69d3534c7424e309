/**
 * One card per peer: its name and accept policy (a contact), the connection path, the chat
 * with its history, and file transfers with progress, cancel and save.
 */
import {
  type ChatMessage,
  contact,
  history,
  saveContact,
  saveMessage,
} from '../browser/chat-store.ts';
import {
  FILE_SERVICE,
  type IncomingFile,
  receiveFile,
  sendFile,
  type TransferProgress,
  type TransferResult,
} from '../core/node/file-transfer.ts';
import { linkLabel, relayHops } from '../core/node/rtc.ts';
import type { MeshStream } from '../core/node/stream.ts';
import { webPanel } from './mesh-web.ts';
import type { LinkView, NodeClient } from './node-client.ts';

const $ = <T extends Element>(root: ParentNode, selector: string): T => {
  const el = root.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
};

const formatBytes = (n: number): string => {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
};

async function* fileChunks(file: File): AsyncIterable<Uint8Array> {
  const reader = file.stream().getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield value;
  }
}

class PeerCard {
  readonly el: HTMLElement;
  private chat: MeshStream | undefined;
  private opening: Promise<MeshStream> | undefined;
  private readonly messages: HTMLOListElement;
  private readonly transfers: HTMLUListElement;
  private readonly path: HTMLElement;
  private link: LinkView | undefined;
  private pathTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly peer: string,
    template: HTMLTemplateElement,
    private readonly node: NodeClient,
  ) {
    const fragment = template.content.cloneNode(true) as DocumentFragment;
    this.el = $<HTMLElement>(fragment, 'article');
    this.el.dataset.peer = peer;
    this.el.dataset.open = 'false';
    $<HTMLElement>(this.el, '.peer-id').textContent = peer;
    this.messages = $(this.el, '.messages');
    this.transfers = $(this.el, '.transfers');
    this.path = $(this.el, '.path');
    this.path.textContent = 'not connected';
    this.wireContact();
    this.wireCompose();
    this.wireFiles();
    this.el.append(webPanel(peer));
    $<HTMLButtonElement>(this.el, '.hangup').addEventListener('click', () => this.link?.close());
    void this.loadHistory();
  }

  attach(link: LinkView): void {
    this.link = link;
    this.el.dataset.open = 'true';
    if (link.peer.name) {
      const name = $<HTMLInputElement>(this.el, '.peer-name');
      if (!name.value) name.placeholder = link.peer.name;
    }
    const refresh = async () => {
      if (!link.isOpen) return;
      const info = await link.path().catch(() => undefined);
      if (!info) return;
      const hops = relayHops(info);
      const label = linkLabel(info);
      // Two relay hops: both sides relayed (each by its own gateway in a federated mesh).
      const via =
        hops === 2
          ? `${label} · through 2 relays (${info.localAddress ?? '?'} → ${info.remoteAddress ?? '?'})`
          : label === 'direct'
            ? label
            : `${label} · gateway ${this.node.gateway.gatewayId?.slice(0, 12) ?? '?'}…`;
      this.path.textContent = `${via} · ${info.local ?? '?'} → ${info.remote ?? '?'}${info.protocol ? ` (${info.protocol})` : ''}${info.rttMs !== null ? ` · ${info.rttMs} ms` : ''}`;
      this.path.dataset.local = info.local ?? '';
      this.path.dataset.remote = info.remote ?? '';
      this.path.dataset.relayHops = String(hops);
      this.path.dataset.relay = info.relayProtocol ?? '';
    };
    void refresh();
    clearInterval(this.pathTimer);
    this.pathTimer = setInterval(() => void refresh(), 2000);
    link.onClose(() => {
      if (this.link !== link) return;
      clearInterval(this.pathTimer);
      this.el.dataset.open = 'false';
      this.path.textContent = 'not connected';
      this.chat = undefined;
    });
  }

  /** A chat stream the peer opened. */
  useChat(stream: MeshStream): void {
    this.chat = stream;
    void this.readChat(stream);
  }

  /** A file the peer is sending. */
  async receive(stream: MeshStream): Promise<void> {
    const row = this.transferRow('receiving');
    let incoming: IncomingFile;
    try {
      incoming = await receiveFile(stream, (p) => this.progress(row, p));
    } catch (err) {
      this.finish(row, { state: 'failed', message: (err as Error).message });
      return;
    }
    $<HTMLElement>(row, '.name').textContent =
      `${incoming.offer.name} (${formatBytes(incoming.offer.size)}) from peer`;
    $<HTMLButtonElement>(row, '.cancel').onclick = () => incoming.cancel();
    const result = await incoming.result;
    this.finish(row, result);
    if (result.state === 'complete' && result.chunks) {
      const blob = new Blob(result.chunks as BlobPart[], {
        type: incoming.offer.type || 'application/octet-stream',
      });
      const save = $<HTMLAnchorElement>(row, '.save');
      save.href = URL.createObjectURL(blob);
      save.download = incoming.offer.name;
      save.hidden = false;
    }
  }

  private async send(file: File): Promise<void> {
    const row = this.transferRow('sending');
    $<HTMLElement>(row, '.name').textContent = `${file.name} (${formatBytes(file.size)}) to peer`;
    let stream: MeshStream;
    try {
      stream = await this.node.dial(this.peer, FILE_SERVICE);
    } catch (err) {
      this.finish(row, { state: 'failed', message: (err as Error).message });
      return;
    }
    $<HTMLButtonElement>(row, '.cancel').onclick = () => stream.close();
    const result = await sendFile(
      stream,
      { name: file.name, size: file.size, type: file.type },
      fileChunks(file),
      (p) => this.progress(row, p),
    );
    this.finish(row, result);
  }

  private transferRow(state: 'sending' | 'receiving'): HTMLLIElement {
    const row = document.createElement('li');
    row.className = 'transfer';
    row.dataset.state = state;
    row.innerHTML =
      '<span class="name"></span> <progress max="100" value="0"></progress> <span class="stats"></span> <button type="button" class="secondary cancel">Cancel</button> <a class="save" hidden>Save</a>';
    this.transfers.prepend(row);
    return row;
  }

  private progress(row: HTMLElement, p: TransferProgress): void {
    const percent = p.total === 0 ? 100 : Math.floor((p.bytes / p.total) * 100);
    const bar = $<HTMLProgressElement>(row, 'progress');
    bar.value = percent;
    $<HTMLElement>(row, '.stats').textContent =
      `${formatBytes(p.bytes)} of ${formatBytes(p.total)} · ${formatBytes(Math.round(p.rate))}/s`;
  }

  private finish(row: HTMLElement, result: TransferResult): void {
    row.dataset.state = result.state;
    $<HTMLButtonElement>(row, '.cancel').hidden = true;
    const stats = $<HTMLElement>(row, '.stats');
    if (result.state === 'complete') {
      $<HTMLProgressElement>(row, 'progress').value = 100;
      stats.textContent += ` · complete, SHA-256 ${result.sha256?.slice(0, 16)}… verified`;
      row.dataset.sha256 = result.sha256 ?? '';
    } else {
      stats.textContent = `${result.state}: ${result.message ?? ''}`;
    }
  }

  private wireFiles(): void {
    const input = $<HTMLInputElement>(this.el, '.file-input');
    input.addEventListener('change', () => {
      for (const file of input.files ?? []) void this.send(file);
      input.value = '';
    });
    this.el.addEventListener('dragover', (ev) => {
      ev.preventDefault();
      this.el.classList.add('dropping');
    });
    this.el.addEventListener('dragleave', () => this.el.classList.remove('dropping'));
    this.el.addEventListener('drop', (ev) => {
      ev.preventDefault();
      this.el.classList.remove('dropping');
      for (const file of ev.dataTransfer?.files ?? []) void this.send(file);
    });
  }

  private wireCompose(): void {
    const form = $<HTMLFormElement>(this.el, '.compose');
    const input = $<HTMLInputElement>(form, 'input');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = '';
      try {
        const stream = await this.chatStream();
        await stream.send(JSON.stringify({ text }));
        await this.record({ peer: this.peer, from: 'me', text, at: Date.now() });
      } catch (err) {
        input.value = text;
        this.note(`not sent: ${(err as Error).message}`);
      }
    });
  }

  private async wireContact(): Promise<void> {
    const name = $<HTMLInputElement>(this.el, '.peer-name');
    const policy = $<HTMLSelectElement>(this.el, '.peer-policy');
    const saved = await contact(this.peer);
    name.value = saved?.name ?? '';
    policy.value = saved?.policy ?? 'default';
    const save = () =>
      void saveContact({
        id: this.peer,
        name: name.value.trim(),
        policy: policy.value as 'default',
      });
    name.addEventListener('change', save);
    policy.addEventListener('change', save);
  }

  private chatStream(): Promise<MeshStream> {
    if (this.chat?.isOpen) return Promise.resolve(this.chat);
    this.opening ??= this.node
      .dial(this.peer, 'chat')
      .then((stream) => {
        this.useChat(stream);
        return stream;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  private async readChat(stream: MeshStream): Promise<void> {
    const reader = stream.readable.getReader();
    for (;;) {
      const { value, done } = await reader
        .read()
        .catch(() => ({ value: undefined, done: true as const }));
      if (done) return;
      try {
        const text = (JSON.parse(String(value)) as { text?: unknown }).text;
        if (typeof text === 'string' && text.length <= 10_000) {
          await this.record({ peer: this.peer, from: 'peer', text, at: Date.now() });
        }
      } catch {
        // not a chat message: ignore it
      }
    }
  }

  private async loadHistory(): Promise<void> {
    for (const m of await history(this.peer)) this.show(m);
  }

  private async record(m: ChatMessage): Promise<void> {
    this.show(m);
    await saveMessage(m);
  }

  private show(m: ChatMessage): void {
    const li = document.createElement('li');
    li.className = m.from === 'me' ? 'mine' : 'theirs';
    li.textContent = `${m.from === 'me' ? 'me' : 'peer'}: ${m.text}`;
    li.title = new Date(m.at).toLocaleString();
    this.messages.append(li);
    li.scrollIntoView({ block: 'nearest' });
  }

  private note(text: string): void {
    const li = document.createElement('li');
    li.className = 'note';
    li.textContent = text;
    this.messages.append(li);
  }
}

export class PeersView {
  private readonly cards = new Map<string, PeerCard>();

  constructor(
    private readonly container: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly template: HTMLTemplateElement,
    private readonly node: NodeClient,
  ) {
    node.on('link', (link) => this.card(link.id).attach(link));
    node.listen('chat', (stream) => this.card(stream.peer.id).useChat(stream));
    node.listen(FILE_SERVICE, (stream) => void this.card(stream.peer.id).receive(stream));
  }

  card(peer: string): PeerCard {
    let card = this.cards.get(peer);
    if (!card) {
      card = new PeerCard(peer, this.template, this.node);
      this.cards.set(peer, card);
      this.container.prepend(card.el);
      this.empty.hidden = true;
    }
    return card;
  }
}
