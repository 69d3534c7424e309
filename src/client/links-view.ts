/** The list of peer connections: one message view per peer, with path details. */
import type { PeerLink } from '../core/node/mesh-node.ts';

const $ = <T extends Element>(root: ParentNode, selector: string): T => {
  const el = root.querySelector<T>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
};

export class LinksView {
  private readonly views = new Map<string, HTMLElement>();

  constructor(
    private readonly container: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly template: HTMLTemplateElement,
  ) {}

  show(link: PeerLink): void {
    const existing = this.views.get(link.id);
    const fragment = this.template.content.cloneNode(true) as DocumentFragment;
    const view = $<HTMLElement>(fragment, 'article');
    view.dataset.peer = link.id;
    view.dataset.open = 'true';
    view.dataset.testid = 'link';
    $<HTMLElement>(view, '.peer').textContent = link.peer.name
      ? `${link.peer.name} · ${link.id}`
      : link.id;
    const messages = $<HTMLOListElement>(view, '.messages');
    if (existing)
      messages.replaceChildren(...$<HTMLOListElement>(existing, '.messages').childNodes);
    const add = (text: string, mine: boolean) => {
      const li = document.createElement('li');
      li.className = mine ? 'mine' : 'theirs';
      li.textContent = mine ? `me: ${text}` : `${link.peer.name ?? 'peer'}: ${text}`;
      messages.append(li);
      li.scrollIntoView({ block: 'nearest' });
    };
    link.onMessage((text) => add(text, false));
    const form = $<HTMLFormElement>(view, '.compose');
    const input = $<HTMLInputElement>(form, 'input');
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text || !link.isOpen) return;
      link.send(text);
      add(text, true);
      input.value = '';
    });
    $<HTMLButtonElement>(view, '.hangup').addEventListener('click', () => link.close());
    const path = $<HTMLElement>(view, '.path');
    const refresh = async () => {
      if (!link.isOpen) return;
      const info = await link.path().catch(() => undefined);
      if (!info) return;
      const direct = info.local !== 'relay' && info.remote !== 'relay';
      path.textContent = `${direct ? 'direct' : 'relayed'} · ${info.local ?? '?'} → ${info.remote ?? '?'}${info.protocol ? ` (${info.protocol})` : ''}${info.rttMs !== null ? ` · ${info.rttMs} ms` : ''}`;
      path.dataset.local = info.local ?? '';
      path.dataset.remote = info.remote ?? '';
    };
    void refresh();
    const timer = setInterval(() => void refresh(), 2000);
    link.onClose(() => {
      clearInterval(timer);
      view.dataset.open = 'false';
      path.textContent = 'closed';
      input.disabled = true;
    });
    if (existing) existing.replaceWith(view);
    else this.container.prepend(view);
    this.views.set(link.id, view);
    this.empty.hidden = true;
  }
}
