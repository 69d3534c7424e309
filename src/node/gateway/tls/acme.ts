/**
 * Certificates from an ACME CA (RFC 8555; Let's Encrypt by default) with acme-client: one
 * for `--domain`, obtained at first start with an http-01 challenge (answered on the plain
 * HTTP port, challenges.ts), kept in the data directory, and renewed in the background at
 * two thirds of its lifetime (Let's Encrypt's 90 days: 30 days before expiry), without a
 * restart: the front door serves the new one to new handshakes.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as acme from 'acme-client';
import { writeFileAtomically } from '../../atomic-file.ts';
import type { Logger } from '../../log.ts';
import type { CertificateSource, KeyPair } from './certificate-source.ts';
import type { ChallengeStore } from './challenges.ts';

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

/** A renewal that failed is tried again after this share of the time left (and 10 s at least). */
const RETRY_SHARE = 1 / 6;
const MIN_RETRY_MS = 10_000;
const MAX_RETRY_MS = 3_600_000;
/** Timers are set at most this far ahead (setTimeout holds at most ~24.8 days). */
const MAX_TIMER_MS = 86_400_000;

export interface AcmeOptions {
  domain: string;
  email: string;
  directoryUrl: string;
  /** The gateway's data directory: the account key and the certificate live in `acme/`. */
  dataDir: string;
  challenges: ChallengeStore;
  logger: Logger;
}

interface Held extends KeyPair {
  notBefore: number;
  notAfter: number;
}

export class AcmeCertificates implements CertificateSource {
  private readonly listeners: ((pair: KeyPair) => void)[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Certificates obtained by this process (the first at start when none was kept). */
  renewals = 0;

  private constructor(
    private readonly options: AcmeOptions,
    private readonly client: acme.Client,
    private held: Held,
  ) {}

  /** The kept certificate if it is for the domain and not yet due, else a new one. */
  static async start(options: AcmeOptions): Promise<AcmeCertificates> {
    const dir = join(options.dataDir, 'acme');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const accountKey = await loadOrCreate(join(dir, 'account-key.pem'), () =>
      acme.crypto.createPrivateEcdsaKey('P-256'),
    );
    const client = new acme.Client({ directoryUrl: options.directoryUrl, accountKey });
    const kept = await readKept(dir, options.domain);
    const fresh = kept && Date.now() < renewAt(kept) ? kept : undefined;
    const source = new AcmeCertificates(
      options,
      client,
      fresh ?? (await obtain(client, options, dir)),
    );
    if (!fresh) source.renewals++;
    source.schedule(renewAt(source.held) - Date.now());
    const until = new Date(source.held.notAfter).toISOString();
    options.logger.info(
      { domain: options.domain, until, kept: fresh !== undefined },
      'TLS certificate from ACME in use',
    );
    return source;
  }

  get current(): KeyPair {
    return this.held;
  }

  /** When the certificate in use expires (ms since the epoch). */
  get notAfter(): number {
    return this.held.notAfter;
  }

  onChange(listener: (pair: KeyPair) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private schedule(inMs: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const wait = Math.max(0, inMs);
    this.timer = setTimeout(
      () => (wait > MAX_TIMER_MS ? this.schedule(inMs - MAX_TIMER_MS) : void this.renew()),
      Math.min(wait, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const { logger, domain } = this.options;
    try {
      const held = await obtain(this.client, this.options, join(this.options.dataDir, 'acme'));
      if (this.closed) return;
      this.held = held;
      this.renewals++;
      logger.info(
        { domain, until: new Date(held.notAfter).toISOString() },
        'TLS certificate renewed: new handshakes get it',
      );
      for (const listener of this.listeners) listener(held);
      this.schedule(renewAt(held) - Date.now());
    } catch (err) {
      const left = this.held.notAfter - Date.now();
      const retry = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, left * RETRY_SHARE));
      logger.error({ err, domain, retryInMs: retry }, 'TLS certificate renewal failed');
      this.schedule(retry);
    }
  }
}

/** Two thirds into the certificate's lifetime. */
function renewAt(held: Held): number {
  return held.notBefore + ((held.notAfter - held.notBefore) * 2) / 3;
}

async function obtain(client: acme.Client, options: AcmeOptions, dir: string): Promise<Held> {
  const { domain, email, challenges } = options;
  const [key, csr] = await acme.crypto.createCsr(
    { commonName: domain },
    await acme.crypto.createPrivateEcdsaKey('P-256'),
  );
  const cert = await client.auto({
    csr,
    email,
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    // The CA checks; a check from here would need this host's own name to resolve to itself.
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
      if (challenge.type === 'http-01') challenges.set(challenge.token, keyAuthorization);
    },
    challengeRemoveFn: async (_authz, challenge) => {
      challenges.delete(challenge.token);
    },
  });
  const held = withDates({ cert, key: key.toString() });
  await writeFileAtomically(join(dir, `${fileSafe(domain)}.key.pem`), held.key, 0o600);
  await writeFileAtomically(join(dir, `${fileSafe(domain)}.cert.pem`), held.cert, 0o644);
  return held;
}

function withDates(pair: KeyPair, info = acme.crypto.readCertificateInfo(pair.cert)): Held {
  return { ...pair, notBefore: info.notBefore.getTime(), notAfter: info.notAfter.getTime() };
}

async function readKept(dir: string, domain: string): Promise<Held | undefined> {
  try {
    const [cert, key] = await Promise.all([
      readFile(join(dir, `${fileSafe(domain)}.cert.pem`), 'utf8'),
      readFile(join(dir, `${fileSafe(domain)}.key.pem`), 'utf8'),
    ]);
    const info = acme.crypto.readCertificateInfo(cert);
    const names = [info.domains.commonName, ...info.domains.altNames];
    return names.includes(domain) ? withDates({ cert, key }, info) : undefined;
  } catch {
    return undefined;
  }
}

async function loadOrCreate(file: string, make: () => Promise<Buffer>): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch {
    const made = await make();
    await writeFileAtomically(file, made.toString(), 0o600);
    return made;
  }
}

const fileSafe = (domain: string): string => domain.replace(/[^A-Za-z0-9.-]/g, '_');
