/**
 * Debian's stock firefox-esr for the e2e suite, driven over WebDriver BiDi by puppeteer-core
 * (Playwright drives only its own patched Firefox). Each launch gets a fresh profile in a
 * temporary directory, removed on close, with the prefs WebRTC needs on loopback and with
 * Firefox's calls home and updates off (DESIGN §7). Firefox's own console output (its
 * stdout, where `devtools.console.stdout.content` prints every page's and worker's console,
 * and BiDi log entries of the pages) is collected: errors raised in its workers reach only
 * there, and `errors()` lists them so a test can fail on them.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const FIREFOX = process.env.RTCMESH_FIREFOX ?? '/usr/bin/firefox-esr';

export function firefoxAvailable(): boolean {
  return existsSync(FIREFOX);
}

/** The prefs of every test profile (DESIGN §7). */
export const FIREFOX_PREFS: Record<string, unknown> = {
  // ICE gathers no loopback candidates without a media permission, nor loopback at all
  // unless asked, and hides host addresses behind mDNS names no resolver here answers.
  'permissions.default.microphone': 1,
  'media.navigator.streams.fake': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  // Every page's and worker's console on Firefox's stdout (worker errors go nowhere else).
  'devtools.console.stdout.content': true,
  // Calls home: updates, telemetry, push service, captive portal, safe browsing, remote settings.
  'app.update.auto': false,
  'app.update.enabled': false,
  'app.update.disabledForTesting': true,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.server': '',
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'dom.push.connection.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'browser.safebrowsing.update.enabled': false,
  'services.settings.server': 'http://127.0.0.1:9/',
  'extensions.update.enabled': false,
  'extensions.getAddons.cache.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'browser.newtabpage.enabled': false,
  'browser.ping-centre.telemetry': false,
};

/**
 * Lines of Firefox's console output that are the app's errors. Firefox prints
 * `console.error: …` for console.error calls and `JavaScript error: <url>, line …` for
 * uncaught ones (pages and workers alike); only those from the app's origin count.
 */
function appErrors(lines: string[], origin: string): string[] {
  return lines.filter(
    (line) =>
      (/^JavaScript error: /.test(line) && line.includes(origin)) ||
      // A page's or worker's console.error quotes its first argument; Firefox's own don't.
      /^console\.error: "/.test(line) ||
      /DataCloneError/.test(line),
  );
}

export class FirefoxProcess {
  private readonly lines: string[] = [];
  private readonly pageLog: string[] = [];
  private from = 0;

  private constructor(
    readonly browser: Browser,
    private readonly profile: string,
    private readonly refuseDataChannelTransfer: boolean,
  ) {
    const child = browser.process();
    let partial = '';
    const collect = (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
    };
    child?.stdout?.on('data', collect);
    child?.stderr?.on('data', collect);
  }

  /**
   * With `refuseDataChannelTransfer`, every page refuses to move an RTCDataChannel through
   * postMessage with the DataCloneError Firefox ESR 140 throws (DESIGN §7): the fallback's
   * engine, which this machine's newer ESR no longer is.
   */
  static async launch(
    options: { refuseDataChannelTransfer?: boolean } = {},
  ): Promise<FirefoxProcess> {
    const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-firefox-'));
    try {
      const browser = await puppeteer.launch({
        browser: 'firefox',
        executablePath: FIREFOX,
        userDataDir: profile,
        headless: true,
        extraPrefsFirefox: FIREFOX_PREFS,
        // The test's own process handles signals; Firefox is closed in `close()`.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        protocolTimeout: 120_000,
      });
      return new FirefoxProcess(browser, profile, options.refuseDataChannelTransfer ?? false);
    } catch (err) {
      rmSync(profile, { recursive: true, force: true });
      throw err;
    }
  }

  /** A new tab (same profile: tabs of one Firefox share the node). */
  async newPage(): Promise<Page> {
    const page = await this.browser.newPage();
    if (this.refuseDataChannelTransfer) await page.evaluateOnNewDocument(refuseDataChannelTransfer);
    // BiDi log.entryAdded, as puppeteer reports it: the page's own console and errors.
    page.on('console', (msg) => {
      if (msg.type() === 'error') this.pageLog.push(`page console.error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => this.pageLog.push(`page error: ${String(err)}`));
    return page;
  }

  /** The app's errors Firefox printed or reported, from `origin` (its URL), since `expected()`. */
  errors(origin: string): string[] {
    return [...appErrors(this.lines.slice(this.from), origin), ...this.pageLog];
  }

  /** The errors so far were the test's own doing: later checks start after them. */
  expected(): void {
    this.from = this.lines.length;
    this.pageLog.length = 0;
  }

  /** Everything Firefox printed, for a failing test's report. */
  output(): string {
    return this.lines.join('\n');
  }

  async close(): Promise<void> {
    try {
      await this.browser.close();
    } catch {
      this.browser.process()?.kill('SIGKILL');
    } finally {
      rmSync(this.profile, { recursive: true, force: true });
    }
  }
}

/** Runs in the page before its scripts: postMessage refuses data channels as ESR 140 does. */
function refuseDataChannelTransfer(): void {
  const carriesChannel = (transfer: unknown): boolean => {
    const list = Array.isArray(transfer)
      ? transfer
      : ((transfer as { transfer?: unknown[] } | undefined)?.transfer ?? []);
    return list.some((t) => t instanceof RTCDataChannel);
  };
  const refuse = () => {
    throw new DOMException('invalid transferable array for structured clone', 'DataCloneError');
  };
  for (const proto of [Worker.prototype, MessagePort.prototype]) {
    const original = proto.postMessage as (this: unknown, ...args: unknown[]) => void;
    Object.defineProperty(proto, 'postMessage', {
      configurable: true,
      writable: true,
      value(this: unknown, message: unknown, transfer?: unknown) {
        if (carriesChannel(transfer)) refuse();
        return original.call(this, message, transfer);
      },
    });
  }
}
