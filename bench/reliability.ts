/**
 * Dial reliability: many dials in a row between the same two nodes, each a new peer
 * connection (the link is closed after it opens). Every dial must connect or fail with a
 * clear error within its bound; one that does neither is counted as hung (and aborted).
 * Between two Chromium pages (from a tab that is not the RTC host) and between two Node
 * nodes on node-datachannel, each through a real gateway process.
 */
import type { Page } from 'playwright-core';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { startNodeNode } from '../test/support/node-node.ts';
import { newPage } from './browser.ts';

export interface Reliability {
  name: string;
  connected: number;
  failed: number;
  hung: number;
  /** Each distinct failure, with how often it happened. */
  errors: Record<string, number>;
}

/** The dial bench's limits: dials come far faster than a person makes them. */
const GATEWAY_ARGS = ['--limit', 'dialPerId.burst=100000', '--limit', 'dialPerId.perSecond=10000'];

type ReliabilityWindow = Window & {
  rtcmesh?: {
    node: {
      connect(to: string, o?: { signal?: AbortSignal }): Promise<{ close(): void }>;
      gateway: { status: string };
    };
  };
};

/**
 * A node's own bounds (an answer within the dial timeout, then the link open within 20 s)
 * are well inside this: a dial still unsettled then is stuck.
 */
const PAGE_HANG_MS = 90_000;
const NODE_DIAL_TIMEOUT_MS = 10_000;
const NODE_HANG_MS = 45_000;

export async function pageReliability(
  browser: import('playwright-core').Browser,
  dials: number,
): Promise<Reliability> {
  const gateway = await startGateway({ args: GATEWAY_ARGS });
  try {
    const a = await newPage(browser, gateway.url);
    const b = await newPage(browser, gateway.url, () =>
      localStorage.setItem('rtcmesh:accept-policy', 'everyone'),
    );
    const ready = (page: Page) =>
      page.waitForFunction(
        () => (window as ReliabilityWindow).rtcmesh?.node.gateway.status === 'connected',
        undefined,
        { timeout: 20_000 },
      );
    await Promise.all([ready(a.page), ready(b.page)]);
    await a.page.waitForFunction(() => document.body.dataset.rtcHost === 'true');
    const from = await a.context.newPage();
    await from.goto(gateway.url);
    await ready(from);
    const bId = (await b.page.getByTestId('node-id').textContent()) ?? '';
    const total: Reliability = {
      name: 'page to page (from a tab that is not the RTC host)',
      connected: 0,
      failed: 0,
      hung: 0,
      errors: {},
    };
    // In rounds, so one evaluate never runs for long.
    for (let done = 0; done < dials; ) {
      const n = Math.min(100, dials - done);
      const round = await from.evaluate(
        async ({ to, n, hangMs }) => {
          const node = (window as ReliabilityWindow).rtcmesh?.node;
          if (!node) throw new Error('no node');
          const out = { connected: 0, failed: 0, hung: 0, errors: {} as Record<string, number> };
          for (let i = 0; i < n; i++) {
            const abort = new AbortController();
            let timer: ReturnType<typeof setTimeout> | undefined;
            const outcome = await Promise.race([
              node.connect(to, { signal: abort.signal }).then(
                (link) => {
                  link.close();
                  return 'connected';
                },
                (err: Error & { code?: string }) => `${err.code ?? err.name}: ${err.message}`,
              ),
              new Promise<string>((r) => {
                timer = setTimeout(() => r('hung'), hangMs);
              }),
            ]);
            clearTimeout(timer);
            if (outcome === 'connected') out.connected++;
            else if (outcome === 'hung') {
              out.hung++;
              abort.abort();
            } else {
              out.failed++;
              out.errors[outcome] = (out.errors[outcome] ?? 0) + 1;
            }
          }
          return out;
        },
        { to: bId, n, hangMs: PAGE_HANG_MS },
      );
      merge(total, round);
      done += n;
      progress(total, done);
    }
    await a.context.close();
    await b.context.close();
    return total;
  } finally {
    await gateway.stop();
  }
}

export async function nodeReliability(dials: number): Promise<Reliability> {
  const gateway = await startGateway({ args: GATEWAY_ARGS });
  const a = await startNodeNode(gateway.url, { dialTimeoutMs: NODE_DIAL_TIMEOUT_MS });
  const b = await startNodeNode(gateway.url, { dialTimeoutMs: NODE_DIAL_TIMEOUT_MS });
  const total: Reliability = {
    name: 'Node to Node (node-datachannel)',
    connected: 0,
    failed: 0,
    hung: 0,
    errors: {},
  };
  try {
    for (let i = 0; i < dials; i++) {
      const abort = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        a.node.connect(b.identity.id, { signal: abort.signal }).then(
          (link) => {
            link.close();
            return 'connected';
          },
          (err: Error & { code?: string }) => `${err.code ?? err.name}: ${err.message}`,
        ),
        new Promise<string>((r) => {
          timer = setTimeout(() => r('hung'), NODE_HANG_MS);
        }),
      ]);
      clearTimeout(timer);
      if (outcome === 'connected') total.connected++;
      else if (outcome === 'hung') {
        total.hung++;
        abort.abort();
      } else {
        total.failed++;
        total.errors[outcome] = (total.errors[outcome] ?? 0) + 1;
        console.log(`  dial ${i + 1} failed: ${outcome}`);
      }
      if ((i + 1) % 100 === 0) progress(total, i + 1);
    }
    return total;
  } finally {
    a.node.stop();
    b.node.stop();
    await gateway.stop();
  }
}

function progress(r: Reliability, done: number): void {
  console.log(
    `  ${r.name}: ${done} dials, ${r.connected} connected, ${r.failed} failed, ${r.hung} hung`,
  );
}

function merge(into: Reliability, round: Omit<Reliability, 'name'>): void {
  into.connected += round.connected;
  into.failed += round.failed;
  into.hung += round.hung;
  for (const [k, v] of Object.entries(round.errors)) into.errors[k] = (into.errors[k] ?? 0) + v;
}
