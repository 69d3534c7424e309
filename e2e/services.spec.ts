/**
 * A device's web page in the app: a small multi-file web app served by node:http behind
 * `rtcmesh expose http 127.0.0.1:PORT --http` on a CLI node, opened from the connection's
 * panel. The service worker carries every request over the mesh: a relative stylesheet, a
 * script and an image by absolute path, a fetch of 5 MiB whose SHA-256 the page checks, a
 * POST fetch with a body, a form POST and a link by absolute path.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dial, expect, openApp, test, waitForServiceWorker } from './fixtures.ts';
import { RTCMESH_BIN } from './support/gateway-process.ts';

const BLOB = randomBytes(5 * 1024 * 1024);
const BLOB_SHA = createHash('sha256').update(BLOB).digest('hex');
const PIXEL =
  '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="#3a7"/></svg>';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Device admin</title>
<link rel="stylesheet" href="style.css">
<script src="/static/app.js" defer></script></head>
<body data-expected="${BLOB_SHA}">
<h1>Device admin</h1>
<img id="logo" src="/img/logo.svg" alt="logo">
<p id="sha">checking…</p><p id="echo">…</p>
<form method="post" action="/submit"><input name="who" value="Ada"><button>Send</button></form>
<a id="about" href="/about">About</a>
</body></html>`;

const SCRIPT = `
document.body.dataset.script = 'ran';
(async () => {
  const res = await fetch('/data/blob.bin');
  const bytes = await res.arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  document.getElementById('sha').textContent =
    hex === document.body.dataset.expected ? 'sha256 ok (' + bytes.byteLength + ' bytes)' : 'sha256 WRONG ' + hex;
  const echo = await fetch('/api/echo', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: 42 }) });
  document.getElementById('echo').textContent = 'echo ' + (await echo.text());
})();`;

function webApp(): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://device');
    const send = (type: string, body: string | Buffer) => {
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    };
    const readBody = () =>
      new Promise<string>((resolve) => {
        let body = '';
        req.on('data', (d: Buffer) => {
          body += d.toString();
        });
        req.on('end', () => resolve(body));
      });
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /':
        return send('text/html; charset=utf-8', PAGE);
      case 'GET /style.css':
        return send(
          'text/css',
          'body { background: rgb(250, 240, 200); font-family: serif } h1 { color: rgb(120, 30, 30) }',
        );
      case 'GET /static/app.js':
        return send('text/javascript', SCRIPT);
      case 'GET /img/logo.svg':
        return send('image/svg+xml', PIXEL);
      case 'GET /data/blob.bin':
        // Written in pieces, as a large file is: the mesh must stream it.
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        for (let o = 0; o < BLOB.length; o += 256 * 1024)
          res.write(BLOB.subarray(o, o + 256 * 1024));
        return res.end();
      case 'POST /api/echo':
        return void readBody().then((body) => send('application/json', body));
      case 'POST /submit':
        return void readBody().then((body) =>
          send(
            'text/html; charset=utf-8',
            `<!doctype html><link rel="stylesheet" href="/style.css"><h1 id="thanks">Thanks, ${new URLSearchParams(body).get('who')}</h1>`,
          ),
        );
      case 'GET /about':
        return send(
          'text/html; charset=utf-8',
          '<!doctype html><h1 id="about-page">About this device</h1>',
        );
      default:
        res.writeHead(404).end('not here');
    }
  });
}

test('a device exposing its web page: the app opens it in the connection panel and everything works', async ({
  page,
  gateway,
}) => {
  const server = webApp();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const data = mkdtempSync(join(tmpdir(), 'rtcmesh-sv-e2e-'));
  const device = spawn(
    process.execPath,
    [
      RTCMESH_BIN,
      'expose',
      'http',
      `127.0.0.1:${port}`,
      '--http',
      '--gateway',
      gateway.url,
      '--data',
      data,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  device.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  try {
    await expect.poll(() => err.includes('exposing')).toBe(true);
    const deviceId = /node (\S+) \(/.exec(err)?.[1] ?? '';
    await openApp(page);
    await waitForServiceWorker(page);
    await expect(page.getByTestId('status')).toHaveText('connected');
    await dial(page, deviceId);
    const panel = page.locator(`article.link[data-peer="${deviceId}"]`);
    await expect(panel).toHaveAttribute('data-open', 'true');
    // A link alone does not load a device's page into the app's origin…
    const direct = await page.evaluate(async (url) => {
      const res = await fetch(url);
      return { status: res.status, error: res.headers.get('x-rtcmesh-error') };
    }, `/mesh/${deviceId}/http/`);
    expect(direct.status).toBe(502);
    expect(direct.error).toMatch(/open http from the connection's panel/);
    // …opening it from the panel does.
    await panel.getByRole('button', { name: 'Open' }).click();

    const frame = page.frameLocator(`article.link[data-peer="${deviceId}"] iframe.web-frame`);
    await expect(frame.locator('h1')).toHaveText('Device admin');
    // The stylesheet (relative), the script and the image (absolute paths).
    await expect(frame.locator('body')).toHaveCSS('background-color', 'rgb(250, 240, 200)');
    await expect(frame.locator('body')).toHaveAttribute('data-script', 'ran');
    await expect
      .poll(() => frame.locator('#logo').evaluate((img: HTMLImageElement) => img.naturalWidth))
      .toBe(40);
    // 5 MiB fetched and checked by the page; a POST with a JSON body echoed.
    await expect(frame.locator('#sha')).toHaveText(`sha256 ok (${BLOB.length} bytes)`, {
      timeout: 90_000,
    });
    await expect(frame.locator('#echo')).toHaveText('echo {"n":42}');
    await panel.screenshot({ path: test.info().outputPath('connection-panel-web-page.png') });

    // A form POST to an absolute path, and a link to one.
    await frame.getByRole('button', { name: 'Send' }).click();
    await expect(frame.locator('#thanks')).toHaveText('Thanks, Ada');
    await expect(frame.locator('body')).toHaveCSS('background-color', 'rgb(250, 240, 200)');
    await frame.locator('body').evaluate(() => history.back());
    await expect(frame.locator('#about')).toBeVisible();
    await frame.locator('#about').click();
    await expect(frame.locator('#about-page')).toHaveText('About this device');
    const frameUrl = await page
      .locator(`article.link[data-peer="${deviceId}"] iframe.web-frame`)
      .evaluate((f: HTMLIFrameElement) => f.contentWindow?.location.pathname);
    expect(frameUrl).toBe(`/mesh/${deviceId}/http/about`);
  } finally {
    device.kill('SIGTERM');
    server.close();
    rmSync(data, { recursive: true, force: true });
  }
});
