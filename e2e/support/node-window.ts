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
