/** Chromium for benchmarks: the e2e harness's launch options, pages ready for WebRTC. */
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { launchOptions, PERMISSIONS } from '../e2e/support/browser.ts';

export async function launch(): Promise<Browser> {
  return chromium.launch(launchOptions());
}

export async function newPage(
  browser: Browser,
  url: string,
  init?: () => void,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ permissions: PERMISSIONS });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  await page.goto(url);
  return { context, page };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export interface Summary {
  name: string;
  p50: number;
  p95: number;
  n: number;
}

export function summarize(name: string, samples: number[]): Summary {
  return { name, p50: percentile(samples, 50), p95: percentile(samples, 95), n: samples.length };
}
