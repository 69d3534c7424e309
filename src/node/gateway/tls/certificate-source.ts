/**
 * Where the front door's TLS certificate comes from: files an operator (or certbot) keeps
 * (`--tls-cert`, `--tls-key`), re-read when they change, or an ACME CA (acme.ts). Either way
 * the front door is told of each new key pair and gives it to new handshakes only; sessions
 * already open keep theirs.
 */
import { unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../../log.ts';

export interface KeyPair {
  /** PEM: the certificate and its chain. */
  cert: string;
  /** PEM: its private key. */
  key: string;
}

export interface CertificateSource {
  readonly current: KeyPair;
  /** `listener` hears every new key pair from now on. */
  onChange(listener: (pair: KeyPair) => void): void;
  close(): void;
}

/** Throws unless the certificate and key are PEM and belong together. */
export function checkKeyPair(pair: KeyPair): void {
  createSecureContext({ cert: pair.cert, key: pair.key });
}

/** How often the files are looked at (stat) for a change. */
const POLL_MS = 1000;

/**
 * A certificate and key in files, watched: replaced (in place or by a rename, as certbot
 * and cert-manager do), they are read again; a pair that does not load is logged and the
 * one in use stays.
 */
export class FileCertificates implements CertificateSource {
  private readonly listeners: ((pair: KeyPair) => void)[] = [];
  private reading: Promise<void> = Promise.resolve();

  private constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private pair: KeyPair,
    private readonly logger: Logger,
  ) {
    // Polling stat, not inotify: it sees a file replaced by a rename, and a directory mounted later.
    const changed = () => {
      this.reading = this.reading.then(() => this.reload());
    };
    watchFile(certFile, { interval: POLL_MS, persistent: false }, changed);
    watchFile(keyFile, { interval: POLL_MS, persistent: false }, changed);
  }

  static async open(certFile: string, keyFile: string, logger: Logger): Promise<FileCertificates> {
    const pair = await readPair(certFile, keyFile);
    checkKeyPair(pair);
    return new FileCertificates(certFile, keyFile, pair, logger);
  }

  get current(): KeyPair {
    return this.pair;
  }

  onChange(listener: (pair: KeyPair) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    unwatchFile(this.certFile);
    unwatchFile(this.keyFile);
  }

  private async reload(): Promise<void> {
    try {
      const pair = await readPair(this.certFile, this.keyFile);
      if (pair.cert === this.pair.cert && pair.key === this.pair.key) return;
      // The two files change one after the other: a mismatched pair waits for the next change.
      checkKeyPair(pair);
      this.pair = pair;
      this.logger.info({ certFile: this.certFile }, 'TLS certificate file changed: now serving it');
      for (const listener of this.listeners) listener(pair);
    } catch (err) {
      this.logger.warn(
        { err, certFile: this.certFile, keyFile: this.keyFile },
        'TLS certificate files do not load (yet); still serving the previous certificate',
      );
    }
  }
}

async function readPair(certFile: string, keyFile: string): Promise<KeyPair> {
  const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  return { cert, key };
}
