/** Small per-device preferences, kept in localStorage. */
import type { AcceptPolicy } from '../core/node/mesh-node.ts';

const POLICY_KEY = 'rtcmesh:accept-policy';
const KNOWN_KEY = 'rtcmesh:known-peers';
const RELAY_ONLY_KEY = 'rtcmesh:relay-only';

/** Reach peers only through the gateway's relay: they never learn this device's addresses. */
export function relayOnly(): boolean {
  return localStorage.getItem(RELAY_ONLY_KEY) === 'true';
}

export function setRelayOnly(on: boolean): void {
  localStorage.setItem(RELAY_ONLY_KEY, String(on));
}

export function acceptPolicy(): AcceptPolicy {
  const value = localStorage.getItem(POLICY_KEY);
  return value === 'known' || value === 'everyone' ? value : 'ask';
}

export function setAcceptPolicy(policy: AcceptPolicy): void {
  localStorage.setItem(POLICY_KEY, policy);
}

export function knownPeers(): Set<string> {
  try {
    const list: unknown = JSON.parse(localStorage.getItem(KNOWN_KEY) ?? '[]');
    return new Set(
      Array.isArray(list) ? list.filter((v): v is string => typeof v === 'string') : [],
    );
  } catch {
    return new Set();
  }
}

export function rememberPeer(id: string): void {
  const peers = knownPeers();
  if (peers.has(id)) return;
  peers.add(id);
  localStorage.setItem(KNOWN_KEY, JSON.stringify([...peers].slice(-500)));
}
