/**
 * Per-device settings in IndexedDB (DESIGN §6): accept policy, known peers, relay-only and
 * the notifications switch. Windows and the node worker read them here, so the worker
 * decides incoming calls by itself, without asking the tabs. Every write is announced on a
 * BroadcastChannel, so the node worker and other tabs see a change at once.
 */
import type { AcceptPolicy } from '../core/node/mesh-node.ts';
import { openNodeDb, type SettingKey, type Settings } from './db.ts';

export type { Settings };

/** At most this many known peers are kept (the most recent). */
const MAX_KNOWN_PEERS = 500;
/** Where writes are announced; the message is the keys that changed. */
const CHANNEL = 'rtcmesh:settings';

export const DEFAULT_SETTINGS: Readonly<Settings> = {
  acceptPolicy: 'ask',
  relayOnly: false,
  push: false,
  knownPeers: [],
};

const isPolicy = (v: unknown): v is AcceptPolicy =>
  v === 'ask' || v === 'known' || v === 'everyone';

/** One setting checked as it is read: storage written by another version never breaks the app. */
function valid<K extends SettingKey>(key: K, value: unknown): Settings[K] | undefined {
  const ok =
    key === 'acceptPolicy'
      ? isPolicy(value)
      : key === 'knownPeers'
        ? Array.isArray(value) && value.every((v) => typeof v === 'string')
        : typeof value === 'boolean';
  return ok ? (value as Settings[K]) : undefined;
}

/** Every setting, with the default for those never set; defaults if storage fails. */
export async function loadSettings(): Promise<Settings> {
  try {
    const db = await openNodeDb();
    const tx = db.transaction('settings');
    const keys = Object.keys(DEFAULT_SETTINGS) as SettingKey[];
    const values = await Promise.all(keys.map((k) => tx.store.get(k)));
    const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
    keys.forEach((key, i) => {
      const value = valid(key, values[i]);
      if (value !== undefined) settings[key] = value;
    });
    return settings as unknown as Settings;
  } catch (err) {
    console.warn('rtcmesh: could not read the settings', err);
    return { ...DEFAULT_SETTINGS, knownPeers: [] };
  }
}

/** Writes some settings (one transaction) and tells the other contexts. */
export async function saveSettings(changes: Partial<Settings>): Promise<void> {
  const db = await openNodeDb();
  const tx = db.transaction('settings', 'readwrite');
  for (const [key, value] of Object.entries(changes) as [SettingKey, Settings[SettingKey]][])
    if (value !== undefined) void tx.store.put(value, key);
  await tx.done;
  announce(Object.keys(changes) as SettingKey[]);
}

/** Adds peers to the known peers (a peer this device had a link with is "known"). */
export async function rememberPeers(ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const db = await openNodeDb();
  const tx = db.transaction('settings', 'readwrite');
  const known = valid('knownPeers', await tx.store.get('knownPeers')) ?? [];
  const fresh = ids.filter((id) => !known.includes(id));
  if (fresh.length === 0) return void (await tx.done);
  void tx.store.put([...known, ...fresh].slice(-MAX_KNOWN_PEERS), 'knownPeers');
  await tx.done;
  announce(['knownPeers']);
}

let announcer: BroadcastChannel | undefined;

function announce(keys: SettingKey[]): void {
  announcer ??= new BroadcastChannel(CHANNEL);
  announcer.postMessage(keys);
}

/** Calls `changed` whenever any context (this one too) writes settings. */
export function watchSettings(changed: (keys: SettingKey[]) => void): () => void {
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (ev: MessageEvent) => {
    if (Array.isArray(ev.data)) changed(ev.data as SettingKey[]);
  };
  return () => channel.close();
}
