/**
 * Networks that block UDP (offices, hotels, guest Wi-Fi), in real network namespaces: the
 * gateway on a "public" network with a certificate, each Chromium on a host behind a router
 * whose nftables drop every forwarded UDP packet. The page loads over HTTPS; its WebRTC session
 * with the gateway cannot form, so it signals over HTTPS (HTTP mode, docs/design.md §11) and
 * shows connected; a dial by ID carries a 4 MiB checksummed payload relayed over TURN/TCP or
 * TURN/TLS on the front door, and a dial back carries a message. Again with only one side
 * blocked. The test certificate is self-signed: Chromium is told to accept
 * it (`--ignore-certificate-errors`, in these namespaces only).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { selfSigned } from '../test/support/pebble.ts';
import { expect, test } from './fixtures.ts';
import { launchOptions, PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';
import { buildNetwork } from './support/netns.ts';
import { listenForDigest } from './support/node-window.ts';

test.describe.configure({ mode: 'serial' });

type NodeWindow = Window & {
  rtcmesh: {
    node: {
      dial(to: string, service: string): Promise<{ send(m: Uint8Array): Promise<void> }>;
      listen(
        service: string,
        h: (s: { readable: ReadableStream<Uint8Array | string> }) => void,
      ): void;
      link(id: string):
        | {
            path(): Promise<{
              local: string | null;
              remote: string | null;
              relayProtocol?: string | null;
            }>;
          }
        | undefined;
    };
  };
  digest?: Promise<string>;
  chat?: Promise<string>;
};

const SIZE = 4 * 1024 * 1024;

/** What each side's router drops: all UDP, or everything but TCP to port 443 (a hotel's Wi-Fi). */
const BLOCK = {
  udp: 'meta l4proto udp drop',
  'all-but-443':
    'meta l4proto udp drop; add rule ip blockudp forwarded ct state new tcp dport != 443 drop',
} as const;

for (const [i, { blocked, rule }] of [
  { blocked: [true, true], rule: 'udp' as const },
  { blocked: [true, false], rule: 'udp' as const },
  { blocked: [true, true], rule: 'all-but-443' as const },
].entries()) {
  const name =
    rule === 'all-but-443'
      ? 'both sides let out only TCP to 443'
      : blocked[1]
        ? 'both sides block UDP'
        : 'one side blocks UDP';
  test(`${name}: signaling over HTTPS, dial by ID, 4 MiB intact over a TCP or TLS relay @nat`, async () => {
    test.setTimeout(300_000);
    const tag = `ub${process.pid % 100}${i}`;
    const net = buildNetwork(tag, ['cone-nat', 'cone-nat']);
    let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
    let browsers: Awaited<ReturnType<typeof chromium.launch>>[] = [];
    try {
      blocked.forEach((block, n) => {
        if (!block) return;
        execFileSync('ip', [
          'netns',
          'exec',
          `rm${tag}r${n + 1}`,
          'nft',
          `add table ip blockudp; add chain ip blockudp forwarded { type filter hook forward priority 0; }; add rule ip blockudp forwarded ${BLOCK[rule]}`,
        ]);
      });
      const gw = net.gatewayIp;
      const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-udp-blocked-'));
      const { cert, key } = selfSigned(dir, 'gateway', `IP:${gw}`);
      gateway = await startGateway({
        netns: net.gatewayNs,
        listen: `${gw}:80`,
        udp: `${gw}:3478`,
        args: [
          '--turn',
          `${gw}:3479`,
          '--tls-listen',
          `${gw}:443`,
          '--tls-cert',
          cert,
          '--tls-key',
          key,
        ],
      });
      expect(gateway.url).toBe(`https://${gw}`);
      const gw2 = gateway;
      browsers = await Promise.all(
        net.hosts.map((host) => {
          const options = launchOptions();
          const args = [...(options.args ?? []), '--ignore-certificate-errors'];
          return chromium.launch({
            ...options,
            args,
            env: { ...process.env, RTCMESH_NETNS: host },
          });
        }),
      );
      const pages = await Promise.all(
        browsers.map(async (browser) => {
          const context = await browser.newContext({
            permissions: PERMISSIONS,
            ignoreHTTPSErrors: true,
          });
          await context.addInitScript(() =>
            localStorage.setItem('rtcmesh:accept-policy', 'everyone'),
          );
          const page = await context.newPage();
          await page.goto(gw2.url);
          // A first association without a relay fails where UDP is blocked; the next goes
          // through the relay the connect answer named.
          await expect(page.getByTestId('status')).toHaveText('connected', { timeout: 120_000 });
          return page;
        }),
      );
      const [a, b] = pages as [(typeof pages)[0], (typeof pages)[0]];
      const bId = (await b.getByTestId('node-id').textContent()) ?? '';
      await listenForDigest(b);
      const sent = await a.evaluate(
        async ({ to, size }) => {
          const node = (window as unknown as NodeWindow).rtcmesh.node;
          const stream = await node.dial(to, 'check');
          const all = new Uint8Array(size);
          for (let o = 0; o < size; o += 65_536)
            crypto.getRandomValues(all.subarray(o, o + 65_536));
          for (let o = 0; o < size; o += 50_000) await stream.send(all.subarray(o, o + 50_000));
          await stream.send(new Uint8Array(0));
          const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
          const path = await node.link(to)?.path();
          return { digest: [...hash].map((x) => x.toString(16).padStart(2, '0')).join(''), path };
        },
        { to: bId, size: SIZE },
      );
      const received = await b.evaluate(
        () => (window as unknown as NodeWindow).digest as Promise<string>,
      );
      expect(received).toBe(sent.digest);
      // With UDP blocked on A's side, A's end of the link is a relay candidate.
      expect(sent.path?.local).toBe('relay');
      // Relayed over a TCP stream to the gateway: Chromium ranks TURN/TCP (port 80 here) above
      // TURN/TLS, and uses TLS where only 443 is let out.
      expect(['tcp', 'tls']).toContain(sent.path?.relayProtocol);
      if (rule === 'all-but-443') {
        // Only 443 is let out: TURN over TLS on the front door, and the app says so.
        expect(sent.path?.relayProtocol).toBe('tls');
        await expect(a.locator('article.link .path')).toContainText('relayed · TLS 443', {
          timeout: 60_000,
        });
      }
      // And the other way: B dials A by ID and says something.
      await a.evaluate(() => {
        const w = window as unknown as NodeWindow;
        w.chat = new Promise((resolve) => {
          w.rtcmesh.node.listen('chat', async (stream) => {
            for await (const m of stream.readable as unknown as AsyncIterable<Uint8Array>) {
              resolve(new TextDecoder().decode(m));
              break;
            }
          });
        });
      });
      const aId = (await a.getByTestId('node-id').textContent()) ?? '';
      await b.evaluate(async (to) => {
        const stream = await (window as unknown as NodeWindow).rtcmesh.node.dial(to, 'chat');
        await stream.send(new TextEncoder().encode('hello back over the relay'));
      }, aId);
      expect(await a.evaluate(() => (window as unknown as NodeWindow).chat)).toBe(
        'hello back over the relay',
      );
    } finally {
      for (const browser of browsers) await browser.close();
      await gateway?.stop();
      net.destroy();
    }
  });
}
