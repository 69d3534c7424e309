/** Browsers and terminal nodes on one mesh: `rtcmesh listen` / `rtcmesh dial` with a page. */
import { expect, openApp, test } from './fixtures.ts';
import { cli } from './support/cli-process.ts';
import { listenEcho, type NodeWindow } from './support/node-window.ts';

test('the CLI listens on echo; the browser dials it and gets its bytes back', async ({
  page,
  gateway,
}) => {
  const listener = cli(['listen', 'echo', '--exec', 'cat'], gateway.url);
  try {
    await expect.poll(() => /node (\S+) \(/.exec(listener.err())?.[1]).toBeTruthy();
    const cliId = /node (\S+) \(/.exec(listener.err())?.[1] ?? '';
    await openApp(page);
    await expect(page.getByTestId('status')).toHaveText('connected');
    const echoed = await page.evaluate(async (to) => {
      const stream = await (window as unknown as NodeWindow).rtcmesh.node.dial(to, 'echo');
      const sent = new Uint8Array(200_000).map((_, i) => i % 256);
      await stream.send(sent);
      await stream.send(new Uint8Array(0)); // end of input
      const reader = stream.readable.getReader();
      let got = 0;
      let same = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done || typeof value === 'string' || value.length === 0) break;
        for (let i = 0; i < value.length; i++) if (value[i] !== (got + i) % 256) same = false;
        got += value.length;
      }
      return { got, same };
    }, cliId);
    expect(echoed).toEqual({ got: 200_000, same: true });
  } finally {
    await listener.stop();
  }
});

test('the browser listens; the CLI dials it and the user accepts', async ({ page, gateway }) => {
  const { id } = await openApp(page);
  await expect(page.getByTestId('status')).toHaveText('connected');
  await listenEcho(page);
  const dialer = cli(['dial', id, 'echo'], gateway.url, 'hello from the terminal\n');
  try {
    await expect(page.getByTestId('incoming')).toBeVisible();
    await page.getByRole('button', { name: 'Accept' }).click();
    expect(await dialer.exited, `rtcmesh dial failed:\n${dialer.err()}`).toBe(0);
    expect(dialer.out()).toBe('hello from the terminal\n');
  } finally {
    await dialer.stop();
  }
});
