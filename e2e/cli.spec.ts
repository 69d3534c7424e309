/** Browsers and terminal nodes on one mesh: `rtcmesh listen` / `rtcmesh dial` with a page. */
import { expect, openApp, test } from './fixtures.ts';
import { cli } from './support/cli-process.ts';
import { dialEcho, listenEcho } from './support/node-window.ts';

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
    const echoed = await dialEcho(page, cliId, 200_000);
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
