/**
 * A browser in a disconnected mesh (docs/design.md §10 "Browsers in a disconnected mesh"): a
 * LAN of network namespaces on a bridge with no route anywhere else, no Redis and no --gateway
 * anywhere. Host 1 runs `rtcmesh node --may-serve` and becomes the LAN's gateway; host 2 runs
 * `rtcmesh listen echo --exec cat`; host 3 runs `rtcmesh app` and a Chromium in host 3's
 * namespace opens http://localhost:PORT with no configuration. The page dials host 2's node by
 * ID and the bytes echo back intact; then a CLI on host 2 dials the page.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { buildLan, cliOnHost, type TestLan } from '../test/support/lan.ts';
import { expect, test } from './fixtures.ts';
import { CHROMIUM_ARGS, launchOptions, PERMISSIONS } from './support/browser.ts';
import type { CliRun } from './support/cli-process.ts';
import { dialEcho, listenEcho, type NodeWindow } from './support/node-window.ts';
import { waitFor } from './support/wait.ts';

const APP_PORT = 7743;

type Device = CliRun;

const cases = [
  {
    name: 'a --may-serve CLI device is the LAN gateway',
    appMayServe: false,
  },
  {
    name: "`rtcmesh app --may-serve` itself runs the LAN's gateway",
    appMayServe: true,
  },
];

// Each case builds its own LAN; they run one at a time.
test.describe.configure({ mode: 'serial' });

// Tagged @nat: it makes network namespaces, so it runs where they are allowed, on one worker.
for (const [i, c] of cases.entries()) {
  test(`a browser on a LAN with no internet, through \`rtcmesh app\` (${c.name}): dials a CLI node by ID and is dialled @nat`, async () => {
    test.setTimeout(300_000);
    const lan: TestLan = buildLan(`lb${process.pid % 1000}${i}`, 3);
    const scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-lan-app-'));
    const devices: Device[] = [];
    let browser: Browser | undefined;
    /** `rtcmesh …` on a LAN host, as a user runs it there, with a data directory of its own. */
    const rtcmesh = (host: number, args: string[], input?: Buffer): Device => {
      const device = cliOnHost(lan, host, scratch, args, {
        input,
        env: { ...process.env, RTCMESH_RTC_LOG: process.env.LAN_APP_RTC_LOG ?? 'warning' },
      });
      devices.push(device);
      return device;
    };
    const serving = (d: Device) =>
      /serving as this LAN's gateway (\S+) at (\S+)/.exec(d.err())?.[1];
    try {
      // Host 1 is the LAN's gateway, or (second case) host 3's `rtcmesh app --may-serve` is.
      const gatewayDevice = c.appMayServe ? undefined : rtcmesh(1, ['node', '--may-serve']);
      if (gatewayDevice)
        await waitFor(() => serving(gatewayDevice), 'host 1 to serve as the LAN gateway');
      const app = rtcmesh(3, [
        'app',
        '--port',
        String(APP_PORT),
        ...(c.appMayServe ? ['--may-serve'] : []),
      ]);
      const lanGatewayId = await waitFor(
        () => serving(gatewayDevice ?? app),
        'a device to serve as the LAN gateway',
      );
      const listener = rtcmesh(2, ['listen', 'echo', '--exec', 'cat']);
      const listenerId = await waitFor(
        () => /node (\S+) \(\S+\) connected to/.exec(listener.err())?.[1],
        'the listener on host 2 to connect',
      );
      const url = await waitFor(
        () => /rtcmesh app: open (\S+) in a browser/.exec(app.out().toString())?.[1],
        '`rtcmesh app` to say which URL to open',
      );
      expect(url).toBe(`http://localhost:${APP_PORT}`);
      // It links to the gateway it heard, once that gateway's signed record is checked.
      await waitFor(
        () => app.err().includes(`linked to the LAN gateway ${lanGatewayId}`) || undefined,
        "the app's gateway to link to the LAN gateway",
      );

      // Chromium as a user runs it: no flag for WebRTC on loopback (its session with the app's
      // gateway on 127.0.0.1 forms without it), nor any insecure origin made secure.
      const options = launchOptions();
      const args = (options.args ?? CHROMIUM_ARGS).filter(
        (a) => a !== '--allow-loopback-in-peer-connection',
      );
      browser = await chromium.launch({
        ...options,
        args,
        env: { ...process.env, RTCMESH_NETNS: lan.hosts[2]?.ns ?? '' },
      });
      const context = await browser.newContext({ permissions: PERMISSIONS });
      await context.addInitScript(() => localStorage.setItem('rtcmesh:accept-policy', 'everyone'));
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(url);
      await expect(page.locator('body[data-ready="true"]')).toBeAttached({ timeout: 60_000 });
      await expect(page.getByTestId('status')).toHaveText('connected', { timeout: 60_000 });
      // A secure context: the service worker, which an http://10.x origin could not have.
      expect(await page.evaluate(() => window.isSecureContext)).toBe(true);
      const pageId = (await page.getByTestId('node-id').textContent()) ?? '';
      // Its gateway is its origin, linked to the LAN gateway; and its session with it is the
      // WebRTC one (not the HTTPS signaling a browser falls back on when that cannot form).
      const gatewayState = () =>
        page.evaluate(async () => {
          const metrics = await (await fetch('/metrics')).text();
          const info = (await (await fetch('/v1/info')).json()) as {
            federation?: { peers: string[] };
          };
          return {
            sessions: /^rtcmesh_sessions (\d+)/m.exec(metrics)?.[1],
            peers: info.federation?.peers ?? [],
          };
        });
      await expect
        .poll(gatewayState, { timeout: 60_000 })
        .toEqual({ sessions: '1', peers: [lanGatewayId] });

      // The page dials host 2's CLI node by ID: 200 kB echo back byte-identical.
      const echoed = await dialEcho(page, listenerId, 200_000, 7);
      expect(echoed).toEqual({ got: 200_000, same: true });
      const path = await page.evaluate(
        (to) => (window as unknown as NodeWindow).rtcmesh.node.link(to)?.path(),
        listenerId,
      );
      test.info().annotations.push({ type: 'path', description: JSON.stringify(path) });

      // The reverse: a CLI on host 2 dials the page's echo service (accept policy "everyone").
      await listenEcho(page);
      const payload = randomBytes(100_000);
      const dialer = rtcmesh(2, ['dial', pageId, 'echo'], payload);
      expect(await dialer.exited, dialer.err()).toBe(0);
      expect(
        dialer.out().equals(payload),
        `${dialer.out().length} of ${payload.length} bytes came back\n${dialer.err()}`,
      ).toBe(true);
      expect(problems).toEqual([]);
    } catch (err) {
      for (const [i, d] of devices.entries()) console.error(`--- device ${i} stderr:\n${d.err()}`);
      throw err;
    } finally {
      await browser?.close();
      for (const d of devices) d.child.kill('SIGTERM');
      await Promise.all(devices.map((d) => d.exited));
      lan.destroy();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
}
