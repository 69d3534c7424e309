/**
 * Settings as the window keeps them: in IndexedDB (browser/settings-store.ts), where the
 * node worker reads them too. Older versions of the app kept them in localStorage, which
 * workers cannot read: whatever is left there is moved into IndexedDB as a window starts,
 * and removed, so nobody loses a setting.
 */
import type { Settings } from '../browser/settings-store.ts';
import { rememberPeers, saveSettings } from '../browser/settings-store.ts';

/** The localStorage keys of earlier versions. */
const LEGACY = {
  acceptPolicy: 'rtcmesh:accept-policy',
  knownPeers: 'rtcmesh:known-peers',
  relayOnly: 'rtcmesh:relay-only',
  push: 'rtcmesh:push',
} as const;

/** Moves settings left in localStorage into IndexedDB (then removes them there). */
export async function moveSettingsFromLocalStorage(storage: Storage = localStorage): Promise<void> {
  const changes: Partial<Settings> = {};
  const policy = storage.getItem(LEGACY.acceptPolicy);
  if (policy !== null)
    changes.acceptPolicy = policy === 'known' || policy === 'everyone' ? policy : 'ask';
  const relay = storage.getItem(LEGACY.relayOnly);
  if (relay !== null) changes.relayOnly = relay === 'true';
  const push = storage.getItem(LEGACY.push);
  if (push !== null) changes.push = push === 'on';
  const known = storage.getItem(LEGACY.knownPeers);
  let peers: string[] = [];
  try {
    const list: unknown = JSON.parse(known ?? '[]');
    if (Array.isArray(list)) peers = list.filter((v): v is string => typeof v === 'string');
  } catch {
    // unreadable: nothing to keep
  }
  if (Object.keys(changes).length > 0) await saveSettings(changes);
  await rememberPeers(peers);
  // Only once they are safe in IndexedDB.
  for (const key of Object.values(LEGACY)) storage.removeItem(key);
}
