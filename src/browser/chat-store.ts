/** Chat history and contacts in IndexedDB. */
import { type ChatMessage, type Contact, openNodeDb } from './db.ts';

export type { ChatMessage, Contact };

export async function saveMessage(message: ChatMessage): Promise<void> {
  await (await openNodeDb()).add('messages', message);
}

export async function history(peer: string): Promise<ChatMessage[]> {
  return (await openNodeDb()).getAllFromIndex('messages', 'peer', peer);
}

/** Peers with a chat history, most recent first. */
export async function chatPeers(): Promise<string[]> {
  const all = await (await openNodeDb()).getAll('messages');
  const last = new Map<string, number>();
  for (const m of all) last.set(m.peer, Math.max(last.get(m.peer) ?? 0, m.at));
  return [...last.entries()].sort((a, b) => b[1] - a[1]).map(([peer]) => peer);
}

export async function contact(id: string): Promise<Contact | undefined> {
  return (await openNodeDb()).get('contacts', id);
}

export async function contacts(): Promise<Contact[]> {
  return (await openNodeDb()).getAll('contacts');
}

export async function saveContact(c: Contact): Promise<void> {
  await (await openNodeDb()).put('contacts', c);
}
