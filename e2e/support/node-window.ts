/**
 * A page's node as the console, `npm run bench` and these tests reach it: src/client/main.ts
 * puts it on the window as `rtcmesh.node`. Only what the tests call is typed.
 */
import type { Page } from 'playwright-core';

export type NodeStream = {
  send(m: Uint8Array | string): Promise<void>;
  readable: ReadableStream<Uint8Array | string>;
  close(): void;
};

export type NodeWindow = Window & {
  rtcmesh: {
    node: {
      dial(to: string, service: string): Promise<NodeStream>;
      listen(service: string, handler: (s: NodeStream) => void): void;
      link(id: string): { path(): Promise<Record<string, unknown>> } | undefined;
    };
  };
};

/**
 * Serves `check` on the page's node: the first stream to it is read to its end (an empty
 * message), and `window.digest` resolves with the SHA-256 of what came, in hex.
 */
export async function listenForDigest(page: Pick<Page, 'evaluate'>): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as NodeWindow & { digest?: Promise<string> };
    w.digest = new Promise((resolve) => {
      w.rtcmesh.node.listen('check', async (stream) => {
        const parts: Uint8Array[] = [];
        for await (const m of stream.readable as unknown as AsyncIterable<Uint8Array>) {
          if (m.length === 0) break;
          parts.push(m);
        }
        const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          all.set(p, o);
          o += p.length;
        }
        const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
        resolve([...hash].map((x) => x.toString(16).padStart(2, '0')).join(''));
      });
    });
  });
}

/**
 * Serves `echo` on the page's node: every message goes back, the empty end of input too. The
 * page is Playwright's or puppeteer's (Firefox).
 */
export async function listenEcho(page: {
  evaluate(fn: () => void): Promise<unknown>;
}): Promise<void> {
  await page.evaluate(() => {
    (window as unknown as NodeWindow).rtcmesh.node.listen('echo', async (stream) => {
      const reader = stream.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        await stream.send(value);
        if (typeof value !== 'string' && value.length === 0) return; // echo the end of input too
      }
    });
  });
}

/** What `dialEcho` got back: how many bytes, and whether each was the one sent. */
export type Echoed = { got: number; same: boolean };

/**
 * In the page, dials `to`'s `echo` service, sends `bytes` bytes (byte i is `(i * step) % 256`)
 * and the end of input, and reads until the end comes back. The page is Playwright's or
 * puppeteer's (Firefox).
 */
export async function dialEcho(
  page: {
    evaluate(
      fn: (a: { to: string; bytes: number; step: number }) => Promise<Echoed>,
      a: { to: string; bytes: number; step: number },
    ): Promise<unknown>;
  },
  to: string,
  bytes: number,
  step = 1,
): Promise<Echoed> {
  return (await page.evaluate(
    async ({ to, bytes, step }) => {
      const stream = await (window as unknown as NodeWindow).rtcmesh.node.dial(to, 'echo');
      const sent = new Uint8Array(bytes).map((_, i) => (i * step) % 256);
      await stream.send(sent);
      await stream.send(new Uint8Array(0)); // end of input
      const reader = stream.readable.getReader();
      let got = 0;
      let same = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done || typeof value === 'string' || value.length === 0) break;
        for (let i = 0; i < value.length; i++)
          if (value[i] !== ((got + i) * step) % 256) same = false;
        got += value.length;
      }
      return { got, same };
    },
    { to, bytes, step },
  )) as Echoed;
}
