/** Streams as users meet them: chat that persists, files of any size, mixed reliability. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from '@playwright/test';
import { expect, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';

async function connectedPair(browser: Browser, url: string) {
  const open = async () => {
    const context = await browser.newContext({ permissions: PERMISSIONS });
    const page = await context.newPage();
    const identity = await openApp(page, url);
    await expect(page.getByTestId('status')).toHaveText('connected');
    return { context, page, ...identity };
  };
  const [a, b] = await Promise.all([open(), open()]);
  await a.page.getByTestId('dial-to').fill(b.id);
  await a.page.getByRole('button', { name: 'Dial', exact: true }).click();
  await b.page.getByRole('button', { name: 'Accept' }).click();
  await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
  return [a, b] as const;
}

const card = (page: Page, peer: string) => page.locator(`article.link[data-peer="${peer}"]`);

test('a 64 MiB file arrives byte-identical with the progress bar at 100%', async ({
  browser,
  gateway,
}) => {
  // 64 MiB through two browsers on 2 cores: generous bounds, not a speed test.
  test.setTimeout(240_000);
  const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-file-'));
  const file = join(dir, 'big.bin');
  const bytes = randomBytes(64 * 1024 * 1024);
  writeFileSync(file, bytes);
  const sent = createHash('sha256').update(bytes).digest('hex');
  try {
    const [a, b] = await connectedPair(browser, gateway.url);
    await card(a.page, b.id).locator('.file-input').setInputFiles(file);
    const incoming = card(b.page, a.id).locator('.transfer');
    await expect(incoming).toHaveAttribute('data-state', 'complete', { timeout: 180_000 });
    await expect(incoming.locator('progress')).toHaveJSProperty('value', 100);
    await expect(incoming).toHaveAttribute('data-sha256', sent);
    await expect(card(a.page, b.id).locator('.transfer')).toHaveAttribute('data-state', 'complete');
    // Save it as the user would, and check the bytes on disk.
    const download = b.page.waitForEvent('download');
    await incoming.locator('.save').click();
    const saved = join(dir, 'saved.bin');
    await (await download).saveAs(saved);
    expect(createHash('sha256').update(readFileSync(saved)).digest('hex')).toBe(sent);
    await a.context.close();
    await b.context.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

type HeldFileWindow = Window & { releaseFile?: () => void; heldAt?: number };

/**
 * Makes the page's next read of a file named `name` (the app reads files with
 * `file.stream()`) pass its first `prefix` bytes and then hold until `releaseFile()`: a
 * transfer of it is then half-way for as long as the test needs, on a fast machine or a slow
 * one, instead of racing the cancel.
 */
async function holdFileAfter(page: Page, name: string, prefix: number) {
  await page.evaluate(
    ({ name, prefix }) => {
      const w = window as HeldFileWindow;
      let release = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      w.releaseFile = release;
      const original = Blob.prototype.stream;
      Blob.prototype.stream = function (this: Blob) {
        const source = original.call(this);
        if (!(this instanceof File) || this.name !== name) return source;
        const reader = source.getReader();
        let passed = 0;
        return new ReadableStream({
          async pull(controller) {
            if (passed >= prefix) {
              w.heldAt = passed;
              await released;
            }
            const { value, done } = await reader.read();
            if (done) controller.close();
            else {
              passed += value.byteLength;
              controller.enqueue(value);
            }
          },
          cancel: (reason) => reader.cancel(reason),
        }) as ReturnType<Blob['stream']>;
      };
    },
    { name, prefix },
  );
}

for (const who of ['sender', 'receiver'] as const) {
  test(`cancelling half-way (${who}) leaves nothing complete on either side`, async ({
    browser,
    gateway,
  }) => {
    test.setTimeout(180_000);
    const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-file-'));
    const file = join(dir, 'big.bin');
    const size = 64 * 1024 * 1024;
    writeFileSync(file, randomBytes(size));
    try {
      const [a, b] = await connectedPair(browser, gateway.url);
      // The sender's file stops after 8 MiB until released: the transfer cannot finish
      // before the cancel, however fast or slow this machine is.
      await holdFileAfter(a.page, 'big.bin', 8 * 1024 * 1024);
      await card(a.page, b.id).locator('.file-input').setInputFiles(file);
      const sending = card(a.page, b.id).locator('.transfer');
      const receiving = card(b.page, a.id).locator('.transfer');
      // Wait for states, not a speed: the transfer has started, the sender has read up to
      // the hold, and the receiver's byte count has moved.
      await expect(receiving).toHaveAttribute('data-state', 'receiving', { timeout: 60_000 });
      await expect
        .poll(() => a.page.evaluate(() => (window as HeldFileWindow).heldAt ?? 0), {
          timeout: 60_000,
        })
        .toBeGreaterThanOrEqual(8 * 1024 * 1024);
      await expect
        .poll(
          () => receiving.locator('progress').evaluate((p) => (p as HTMLProgressElement).value),
          { timeout: 60_000 },
        )
        .toBeGreaterThan(0);
      await expect(sending).toHaveAttribute('data-state', 'sending');

      await (who === 'sender' ? sending : receiving).locator('.cancel').click();
      await expect(receiving).toHaveAttribute('data-state', 'cancelled');
      // Let the sender read on: its next write finds the stream closed.
      await a.page.evaluate(() => (window as HeldFileWindow).releaseFile?.());
      await expect(sending).toHaveAttribute('data-state', 'cancelled', { timeout: 60_000 });
      await expect(receiving.locator('.save')).toBeHidden();
      await expect(b.page.locator('.transfer[data-state="complete"]')).toHaveCount(0);
      await expect(a.page.locator('.transfer[data-state="complete"]')).toHaveCount(0);
      await a.context.close();
      await b.context.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('chat history survives a reload', async ({ browser, gateway }) => {
  const [a, b] = await connectedPair(browser, gateway.url);
  await card(a.page, b.id).locator('.compose input').fill('remember me');
  await card(a.page, b.id).locator('.compose button').click();
  await expect(card(b.page, a.id).locator('.messages li.theirs')).toHaveText('peer: remember me');
  await card(b.page, a.id).locator('.compose input').fill('and me');
  await card(b.page, a.id).locator('.compose button').click();
  await expect(card(a.page, b.id).locator('.messages li.theirs')).toHaveText('peer: and me');
  for (const page of [a.page, b.page]) {
    await page.reload();
    await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  }
  await expect(card(a.page, b.id).locator('.messages li')).toHaveText([
    'me: remember me',
    'peer: and me',
  ]);
  await expect(card(b.page, a.id).locator('.messages li')).toHaveText([
    'peer: remember me',
    'me: and me',
  ]);
  await a.context.close();
  await b.context.close();
});

type NodeWindow = Window & {
  rtcmesh: {
    node: {
      dial(
        to: string,
        service: string,
        options?: object,
      ): Promise<{
        send(m: string | Uint8Array): Promise<void>;
        close(): void;
        readable: ReadableStream<string | Uint8Array>;
      }>;
      listen(
        service: string,
        handler: (s: { readable: ReadableStream<string | Uint8Array> }) => void,
      ): void;
    };
  };
  got?: Record<string, string[]>;
};

test('an unreliable unordered stream and a reliable one on the same peer', async ({
  browser,
  gateway,
}) => {
  const [a, b] = await connectedPair(browser, gateway.url);
  await b.page.evaluate(() => {
    const w = window as unknown as NodeWindow;
    w.got = { reliable: [], lossy: [] };
    for (const service of ['reliable', 'lossy']) {
      w.rtcmesh.node.listen(service, async (stream) => {
        const reader = stream.readable.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          w.got?.[service]?.push(String(value));
        }
      });
    }
  });
  const counts = await a.page.evaluate(async (to) => {
    const node = (window as unknown as NodeWindow).rtcmesh.node;
    const reliable = await node.dial(to, 'reliable');
    const lossy = await node.dial(to, 'lossy', {
      reliable: false,
      ordered: false,
      maxRetransmits: 0,
    });
    const N = 2000;
    const payload = 'x'.repeat(1000);
    await Promise.all([
      (async () => {
        for (let i = 0; i < N; i++) await reliable.send(String(i));
      })(),
      (async () => {
        for (let i = 0; i < N; i++) await lossy.send(`${i}:${payload}`);
      })(),
    ]);
    return N;
  }, b.id);
  await expect
    .poll(() => b.page.evaluate(() => (window as unknown as NodeWindow).got?.reliable?.length))
    .toBe(counts);
  const got = await b.page.evaluate(() => (window as unknown as NodeWindow).got);
  expect(got?.reliable).toEqual(Array.from({ length: counts }, (_, i) => String(i)));
  // The lossy stream ran at the same time and delivered (all, or most, on loopback).
  expect(got?.lossy?.length).toBeGreaterThan(0);
  await a.context.close();
  await b.context.close();
});

type SlowWindow = Window & {
  rtcmesh: {
    node: {
      dial(
        to: string,
        service: string,
      ): Promise<{ send(m: Uint8Array): Promise<void>; close(): void }>;
      listen(
        service: string,
        handler: (s: { readable: ReadableStream<Uint8Array>; bufferedBytes: number }) => void,
      ): void;
    };
  };
  slow?: {
    stream?: { readable: ReadableStream<Uint8Array>; bufferedBytes: number };
    reader?: ReadableStreamDefaultReader<Uint8Array>;
    received: number;
    maxBuffered: number;
    wrong: number;
  };
  written?: number;
};

test('a reader of 1 KB/s holds a sender of 64 MiB to a window, then gets every byte (flow control)', async ({
  browser,
  gateway,
}) => {
  test.setTimeout(300_000);
  const TOTAL = 64 * 1024 * 1024;
  const MESSAGE = 64 * 1024;
  const [a, b] = await connectedPair(browser, gateway.url);
  await b.page.evaluate(() => {
    const w = window as unknown as SlowWindow;
    w.slow = { received: 0, maxBuffered: 0, wrong: 0 };
    w.rtcmesh.node.listen('slow', (stream) => {
      if (w.slow) w.slow.stream = stream;
    });
  });
  // A writes 64 MiB of a pattern B can check byte by byte; B reads nothing yet.
  await a.page.evaluate(
    async ({ to, TOTAL, MESSAGE }) => {
      const w = window as unknown as SlowWindow;
      w.written = 0;
      const stream = await w.rtcmesh.node.dial(to, 'slow');
      void (async () => {
        for (let o = 0; o < TOTAL; o += MESSAGE) {
          const m = new Uint8Array(MESSAGE);
          for (let i = 0; i < MESSAGE; i++) m[i] = ((o + i) * 2654435761) >>> 24;
          await stream.send(m);
          w.written = o + MESSAGE;
        }
      })();
    },
    { to: b.id, TOTAL, MESSAGE },
  );
  const buffered = () =>
    b.page.evaluate(() => (window as unknown as SlowWindow).slow?.stream?.bufferedBytes ?? 0);
  // The window fills, then B reads 1 KB a second for a while: A must wait.
  await expect.poll(buffered, { timeout: 60_000 }).toBeGreaterThanOrEqual(1024 * 1024);
  const slow = await b.page.evaluate(async () => {
    const s = (window as unknown as SlowWindow).slow;
    if (!s?.stream) throw new Error('no stream');
    s.reader = s.stream.readable.getReader();
    let held = 0;
    for (let t = 0; t < 6; t++) {
      if (held === 0) {
        const { value } = await s.reader.read();
        held = value?.length ?? 0;
        s.received += held;
      }
      held = Math.max(0, held - 1024);
      await new Promise((r) => setTimeout(r, 1000));
      s.maxBuffered = Math.max(s.maxBuffered, s.stream.bufferedBytes);
    }
    return s.maxBuffered;
  });
  const writtenWhileSlow = await a.page.evaluate(() => (window as unknown as SlowWindow).written);
  console.log(
    `browser slow reader: B held at most ${slow} bytes; A had written ${writtenWhileSlow}`,
  );
  expect(slow).toBeLessThanOrEqual(4 * 1024 * 1024);
  expect(writtenWhileSlow).toBeLessThan(TOTAL / 4);
  // Full speed: the rest arrives, every byte as written (the first message was checked by
  // length only: its reader had other things to do).
  const result = await b.page.evaluate(async (TOTAL) => {
    const s = (window as unknown as SlowWindow).slow;
    if (!s?.reader || !s.stream) throw new Error('no reader');
    while (s.received < TOTAL) {
      const { value, done } = await s.reader.read();
      if (done || !value) break;
      for (let i = 0; i < value.length; i++)
        if (value[i] !== ((s.received + i) * 2654435761) >>> 24) s.wrong++;
      s.received += value.length;
      s.maxBuffered = Math.max(s.maxBuffered, s.stream.bufferedBytes);
    }
    return { received: s.received, wrong: s.wrong, maxBuffered: s.maxBuffered };
  }, TOTAL);
  expect(result).toEqual({ received: TOTAL, wrong: 0, maxBuffered: expect.any(Number) });
  expect(result.maxBuffered).toBeLessThanOrEqual(4 * 1024 * 1024);
  await expect
    .poll(() => a.page.evaluate(() => (window as unknown as SlowWindow).written))
    .toBe(TOTAL);
  await a.context.close();
  await b.context.close();
});
