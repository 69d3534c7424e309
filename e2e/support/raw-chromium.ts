/**
 * Chromium driven over raw CDP on a pipe, without Playwright. Playwright keeps its pages
 * "visible" and ignores Page.setWebLifecycleState, so a page it drives never freezes; a page
 * driven this way, in the background, really does (DESIGN §7). Used by the freeze test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { CHROMIUM_ARGS, findChromium } from './browser.ts';

interface Pending {
  resolve: (result: Record<string, unknown>) => void;
  reject: (err: Error) => void;
  method: string;
}

export class RawChromium {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffer = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    const input = child.stdio[4] as Readable;
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\0'); end >= 0; end = this.buffer.indexOf('\0')) {
        const message = JSON.parse(this.buffer.slice(0, end)) as {
          id?: number;
          result?: Record<string, unknown>;
          error?: { message: string };
        };
        this.buffer = this.buffer.slice(end + 1);
        const waiting = message.id === undefined ? undefined : this.pending.get(message.id);
        if (!waiting || message.id === undefined) continue;
        this.pending.delete(message.id);
        if (message.error) waiting.reject(new Error(`${waiting.method}: ${message.error.message}`));
        else waiting.resolve(message.result ?? {});
      }
    });
  }

  static async launch(): Promise<RawChromium> {
    const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-raw-'));
    const child = spawn(
      findChromium(),
      [
        ...CHROMIUM_ARGS,
        '--headless=new',
        '--remote-debugging-pipe',
        `--user-data-dir=${profile}`,
        '--disable-features=WebRtcHideLocalIpsWithMdns',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    const browser = new RawChromium(child, profile);
    await browser.send('Browser.getVersion');
    return browser;
  }

  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const output = this.child.stdio[3] as Writable;
    output.write(
      `${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`,
    );
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, method }));
  }

  /** A new browser context (a device of its own) with the microphone granted, as WebRTC needs. */
  async newContext(origin: string): Promise<string> {
    const { browserContextId } = (await this.send('Target.createBrowserContext')) as {
      browserContextId: string;
    };
    await this.send('Browser.grantPermissions', {
      browserContextId,
      origin,
      permissions: ['audioCapture'],
    });
    return browserContextId;
  }

  /** Opens `url` in a background tab of the context; resolves with a page handle. */
  async open(browserContextId: string, url: string): Promise<RawPage> {
    const { targetId } = (await this.send('Target.createTarget', {
      url,
      browserContextId,
      background: true,
    })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', {
      targetId,
      flatten: true,
    })) as { sessionId: string };
    return new RawPage(this, sessionId);
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => undefined);
    await new Promise((r) => (this.child.exitCode === null ? this.child.once('exit', r) : r(0)));
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class RawPage {
  constructor(
    private readonly browser: RawChromium,
    readonly sessionId: string,
  ) {}

  /** Evaluates `expression` (awaiting a promise) and returns its value. */
  async evaluate<T>(expression: string): Promise<T> {
    const result = (await this.browser.send(
      'Runtime.evaluate',
      { expression, awaitPromise: true, returnByValue: true },
      this.sessionId,
    )) as { result?: { value?: T }; exceptionDetails?: { text: string; exception?: unknown } };
    if (result.exceptionDetails)
      throw new Error(
        `evaluate failed: ${result.exceptionDetails.text} ${JSON.stringify(result.exceptionDetails.exception ?? '')}`,
      );
    return result.result?.value as T;
  }

  /** Polls `expression` until it is truthy. */
  async waitFor(expression: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.evaluate<boolean>(`Boolean(${expression})`).catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  setLifecycle(state: 'frozen' | 'active'): Promise<Record<string, unknown>> {
    return this.browser.send('Page.setWebLifecycleState', { state }, this.sessionId);
  }
}
