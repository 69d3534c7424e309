/**
 * The node worker's lifecycle as one tab sees it (DESIGN §6): this class starts the worker
 * (or joins the one running), notices its death, starts a new one and rebinds the tab to
 * it. Everything the tab asks of the node goes through `ask` and `send`, which wait for a
 * live worker across a restart.
 *
 * The node worker is a SharedWorker, one per origin and profile. It lives in the process of
 * the tab that started it and dies if that tab crashes; it holds the Web Lock
 * `LOCKS.worker` while it lives, so a tab granted that lock knows it died. Where
 * SharedWorker is missing the same script runs as a dedicated worker of this tab, which
 * lives as long as the tab does (and runs the node only while the tab holds `LOCKS.node`:
 * main.ts).
 */
import { type Remote, wrap } from 'comlink';
import { type IdentitySummary, LOCKS, type NodeApi } from '../browser/node-api.ts';
import { DialError } from '../core/node/errors.ts';

/** What the worker must know of the tab's DTLS certificate (records list its fingerprints). */
export interface WorkerCertificate {
  fingerprints: string[];
  expires: number;
}

/** Whoever uses the node in this tab, told when the worker dies and when a new one runs. */
export interface WorkerUser {
  /** The worker died: calls in flight have failed; calls from now on wait for the next one. */
  workerLost(): void;
  /** A new worker runs and answers: join it with everything this tab had. */
  workerRestarted(): Promise<void>;
}

export class NodeWorkerHost {
  /** Whether the node worker is shared by every tab (else it is this tab's own). */
  readonly shared = typeof SharedWorker !== 'undefined';
  private api: Remote<NodeApi> | undefined;
  private nextApi = deferred<Remote<NodeApi>>();
  private died = deferred<never>();
  private user: WorkerUser | undefined;
  private certificate: WorkerCertificate | undefined;
  /** The first worker, started at once: it loads while the tab makes its certificate. */
  private readonly first = this.connect();

  /**
   * Gives the worker the tab's certificate (the worker makes the node then) and resolves
   * with this device's identity. From then on the worker's death is watched.
   */
  async start(certificate: WorkerCertificate): Promise<IdentitySummary> {
    this.certificate = certificate;
    const api = this.first;
    const summary = await this.offerCertificate(api);
    this.bind(api);
    // The worker answered, so it holds its lock (it serves no port before): watch it now.
    if (this.shared) this.watch();
    return summary;
  }

  /** Who to tell about the worker's death and rebirth (the tab's NodeClient). */
  serve(user: WorkerUser): void {
    this.user = user;
  }

  /** A call whose answer matters: waits for a live worker, fails if that worker dies. */
  async ask<T>(call: (api: Remote<NodeApi>) => Promise<T>): Promise<T> {
    const api = this.api ?? (await this.nextApi.promise);
    return Promise.race([call(api), this.died.promise]);
  }

  /** A notice: sent now, or to the next worker if this one is gone. */
  send(call: (api: Remote<NodeApi>) => unknown): void {
    const api = this.api;
    if (api) void Promise.resolve(call(api)).catch(() => undefined);
    else void this.nextApi.promise.then(call).catch(() => undefined);
  }

  private connect(): Remote<NodeApi> {
    // Vite finds and bundles the worker only from these literal forms.
    if (this.shared) {
      const worker = new SharedWorker(new URL('../worker/node-worker.ts', import.meta.url), {
        type: 'module',
        name: 'rtcmesh-node',
      });
      return wrap<NodeApi>(worker.port);
    }
    const worker = new Worker(new URL('../worker/node-worker.ts', import.meta.url), {
      type: 'module',
      name: 'rtcmesh-node',
    });
    return wrap<NodeApi>(worker);
  }

  private offerCertificate(api: Remote<NodeApi>): Promise<IdentitySummary> {
    const certificate = this.certificate;
    if (!certificate) throw new Error('the node worker was not started');
    return api.useCertificate(certificate.fingerprints, certificate.expires);
  }

  private bind(api: Remote<NodeApi>): void {
    this.api = api;
    this.nextApi.resolve(api);
  }

  /** Waits for the worker's lock: granted means the worker died. */
  private watch(): void {
    void navigator.locks.request(LOCKS.worker, () => {
      // Let go at once (return), so the new worker can hold it.
      this.lost();
      queueMicrotask(() =>
        this.restart().catch((err: unknown) =>
          console.error('rtcmesh: could not start a new node worker', err),
        ),
      );
    });
  }

  /** Calls made from now on wait for the next worker; calls in flight fail (a dead port never answers). */
  private lost(): void {
    if (!this.api) return;
    this.api = undefined;
    this.nextApi = deferred<Remote<NodeApi>>();
    this.died.reject(new DialError('not-connected', 'the node stopped; it is starting again'));
    this.died = deferred<never>();
    this.user?.workerLost();
  }

  private async restart(): Promise<void> {
    console.info('rtcmesh: the node worker is gone; starting a new one');
    const api = this.connect();
    await this.offerCertificate(api);
    this.bind(api);
    await this.user?.workerRestarted();
    this.watch();
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // nobody may be waiting when it fails
  return { promise, resolve, reject };
}
