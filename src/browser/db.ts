/**
 * The node's IndexedDB, through idb: one typed entry point, nothing else exported.
 * Used by the window, the node worker and the service worker alike, so it type-checks
 * under both the DOM and the WebWorker lib.
 */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb';
import type { AcceptPolicy } from '../core/node/mesh-node.ts';

/**
 * A stored `RTCCertificate`, as any context sees it. The type exists only in windows
 * (DESIGN §7): it survives structured cloning, but only a window can use it, and the window
 * (client/certificate.ts) reads it back as one.
 */
export interface StoredRtcCertificate {
  readonly expires: number;
}

export interface StoredCertificate {
  certificate: StoredRtcCertificate;
  expires: number;
}

/** What any context may read: no RTCCertificate objects, so workers can deserialize it. */
export interface IdentitySummary {
  id: string;
  ip6: string;
  publicKey: string;
  fingerprints: string[];
  certificateExpires: number | null;
}

/** One chat message, kept on this device. */
export interface ChatMessage {
  id?: number;
  peer: string;
  from: 'me' | 'peer';
  text: string;
  at: number;
}

/** A peer this device knows: a name the user gave it and how to treat its calls. */
export interface Contact {
  id: string;
  name: string;
  /** 'default' follows the device-wide policy. */
  policy: 'default' | 'accept' | 'ask' | 'decline';
}

interface RtcmeshDB extends DBSchema {
  keys: { key: 'node'; value: CryptoKeyPair };
  certificates: { key: 'dtls'; value: StoredCertificate };
  identity: { key: 'node'; value: IdentitySummary };
  messages: { key: number; value: ChatMessage; indexes: { peer: string } };
  contacts: { key: string; value: Contact };
  /** Cluster mode: the cluster's gateway URLs, to fail over to when the app's own is down. */
  gateways: { key: 'cluster'; value: string[] };
  /** Per-device settings (browser/settings-store.ts), one record per key. */
  settings: { key: SettingKey; value: Settings[SettingKey] };
}

/** Per-device settings: every context reads them here (the node worker decides calls by them). */
export interface Settings {
  acceptPolicy: AcceptPolicy;
  /** Reach peers only through the gateway's relay: they never learn this device's addresses. */
  relayOnly: boolean;
  /** Whether the user turned call notifications on (off until they do). */
  push: boolean;
  /** Peers this device had a link with, oldest first (at most 500). */
  knownPeers: string[];
}

export type SettingKey = keyof Settings;

export const DB_NAME = 'rtcmesh';
const DB_VERSION = 4;

let db: Promise<IDBPDatabase<RtcmeshDB>> | undefined;

export function openNodeDb(): Promise<IDBPDatabase<RtcmeshDB>> {
  db ??= openDB<RtcmeshDB>(DB_NAME, DB_VERSION, {
    upgrade(database, oldVersion) {
      if (oldVersion < 1) {
        database.createObjectStore('keys');
        database.createObjectStore('certificates');
        database.createObjectStore('identity');
      }
      if (oldVersion < 2) {
        database
          .createObjectStore('messages', { keyPath: 'id', autoIncrement: true })
          .createIndex('peer', 'peer');
        database.createObjectStore('contacts', { keyPath: 'id' });
      }
      if (oldVersion < 3) database.createObjectStore('gateways');
      // Settings lived in the window's localStorage before: the window moves them here
      // (client/settings.ts), because a worker cannot read localStorage.
      if (oldVersion < 4) database.createObjectStore('settings');
    },
    blocking() {
      // A newer version of the app wants to upgrade the schema: let it.
      void db?.then((d) => d.close());
      db = undefined;
    },
  });
  return db;
}
