/**
 * NAT traversal in real network namespaces (TESTING.md): the gateway on a "public" network,
 * each browser on a test host of its own, behind no NAT, an endpoint-independent NAT, or a
 * symmetric one. Two Chromium pages connect, move a checksummed payload, and the test reads
 * the selected candidate pair.
 */
import { chromium } from 'playwright-core';
import { expect, test } from './fixtures.ts';
import { launchOptions, PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';
import { buildNetwork, type SiteKind } from './support/netns.ts';
import { listenForDigest } from './support/node-window.ts';

// Each case builds its own network; they run one at a time.
test.describe.configure({ mode: 'serial' });

type NodeWindow = Window & {
  rtcmesh: {
    node: {
      gateway: { status: string };
      dial(to: string, service: string): Promise<{ send(m: Uint8Array): Promise<void> }>;
      connect(to: string): Promise<unknown>;
      listen(
        service: string,
        h: (s: { readable: ReadableStream<Uint8Array | string> }) => void,
      ): void;
      link(
        id: string,
      ):
        | { path(): Promise<{ local: string | null; remote: string | null }>; close(): void }
        | undefined;
    };
  };
  digest?: Promise<string>;
};

interface Case {
  name: string;
  sites: [SiteKind, SiteKind];
  relayOnlyA?: boolean;
  /** Wait for ICE to settle on a better pair than the first one that worked. */
  settle?: boolean;
  expectPath: (local: string | null, remote: string | null) => void;
}

const cases: Case[] = [
  {
    name: '(a) both nodes public: a direct host path',
    sites: ['public', 'public'],
    settle: true,
    expectPath: (local, remote) => {
      expect(local).toBe('host');
      // B's host address either way: "prflx" when B's check reached A before B's trickled
      // host candidate did (no NAT here rewrites an address).
      expect(['host', 'prflx']).toContain(remote);
    },
  },
  {
    name: '(b) both behind endpoint-independent NAT: a direct path by hole punching',
    sites: ['cone-nat', 'cone-nat'],
    settle: true,
    expectPath: (local, remote) => {
      expect(local).not.toBe('relay');
      expect(['srflx', 'prflx']).toContain(remote);
    },
  },
  {
    name: '(c) both behind symmetric NAT: relayed through the gateway',
    sites: ['symmetric-nat', 'symmetric-nat'],
    expectPath: (local, remote) => expect([local, remote]).toContain('relay'),
  },
  {
    name: '(d) one side relay-only: relayed',
    sites: ['public', 'public'],
    relayOnlyA: true,
    expectPath: (local) => expect(local).toBe('relay'),
  },
];

// Tagged @nat: `npm run test:e2e` runs these alone after the rest, on one worker, because
// hole punching is timing-sensitive and a loaded 2-core machine makes it miss more often.
for (const [i, c] of cases.entries()) {
  test(`${c.name} @nat`, async () => {
    test.setTimeout(180_000);
    const net = buildNetwork(`${process.pid % 1000}${i}`, c.sites);
    const gw = net.gatewayIp;
    const gateway = await startGateway({
      netns: net.gatewayNs,
      listen: `${gw}:8080`,
      udp: `${gw}:3478`,
      args: ['--turn', `${gw}:3479`, '--public-url', `http://${gw}:8080`],
    });
    const browsers = await Promise.all(
      net.hosts.map((host) => {
        const options = launchOptions();
        // The app needs a secure context (WebCrypto, service worker, Web Locks): a real gateway
        // serves HTTPS; this test network has no certificates, so Chromium is told to trust it.
        const args = [
          ...(options.args ?? []),
          `--unsafely-treat-insecure-origin-as-secure=http://${gw}:8080`,
        ];
        return chromium.launch({ ...options, args, env: { ...process.env, RTCMESH_NETNS: host } });
      }),
    );
    try {
      const pages = await Promise.all(
        browsers.map(async (browser, n) => {
          const context = await browser.newContext({ permissions: PERMISSIONS });
          await context.addInitScript(
            ({ relayOnly }) => {
              localStorage.setItem('rtcmesh:accept-policy', 'everyone');
              localStorage.setItem('rtcmesh:relay-only', String(relayOnly));
            },
            { relayOnly: n === 0 && c.relayOnlyA === true },
          );
          const page = await context.newPage();
          await page.goto(gateway.url);
          await expect(page.getByTestId('status')).toHaveText('connected', { timeout: 30_000 });
          return page;
        }),
      );
      const [a, b] = pages as [(typeof pages)[0], (typeof pages)[0]];
      const bId = (await b.getByTestId('node-id').textContent()) ?? '';
      await listenForDigest(b);
      if (c.settle) {
        // Chromium sometimes keeps the first pair that worked, through the relay, although a
        // direct one works too (seen about one time in four here, more behind NAT). A user
        // would simply call again, so the test does too, at most four times, and the direct
        // path must then be chosen.
        let path = '';
        for (let attempt = 0; attempt < 4 && (path === '' || /relay/.test(path)); attempt++) {
          path = await a.evaluate(async (to) => {
            const node = (window as unknown as NodeWindow).rtcmesh.node;
            const old = node.link(to);
            if (old) {
              old.close();
              await new Promise((r) => setTimeout(r, 1000)); // let the peer see it go
            }
            await node.connect(to);
            for (let i = 0; i < 20; i++) {
              const p = await node.link(to)?.path();
              if (p && p.local !== 'relay' && p.remote !== 'relay') return `${p.local} ${p.remote}`;
              await new Promise((r) => setTimeout(r, 500));
            }
            const p = await node.link(to)?.path();
            return `${p?.local} ${p?.remote}`;
          }, bId);
        }
        expect(path).not.toMatch(/relay/);
      }
      const sent = await a.evaluate(async (to) => {
        const node = (window as unknown as NodeWindow).rtcmesh.node;
        const stream = await node.dial(to, 'check');
        const payload = crypto.getRandomValues(new Uint8Array(60_000));
        const all = new Uint8Array(1_000_000);
        for (let o = 0; o < all.length; o += payload.length)
          all.set(payload.subarray(0, all.length - o), o);
        for (let o = 0; o < all.length; o += 50_000) await stream.send(all.subarray(o, o + 50_000));
        await stream.send(new Uint8Array(0));
        const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
        const path = await node.link(to)?.path();
        return { digest: [...hash].map((x) => x.toString(16).padStart(2, '0')).join(''), path };
      }, bId);
      const received = await b.evaluate(
        () => (window as unknown as NodeWindow).digest as Promise<string>,
      );
      expect(received).toBe(sent.digest);
      c.expectPath(sent.path?.local ?? null, sent.path?.remote ?? null);
    } finally {
      for (const browser of browsers) await browser.close();
      await gateway.stop();
      net.destroy();
    }
  });
}
