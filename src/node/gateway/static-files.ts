/** Serves the built PWA: exact files, the app shell for in-app routes, careful cache headers. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

export class StaticFiles {
  private readonly root: string;

  constructor(root: string) {
    this.root = normalize(root.endsWith(sep) ? root : root + sep);
  }

  /** Handles GET/HEAD for `pathname`; returns false when no file (nor the shell) applies. */
  async serve(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      return false;
    }
    if (decoded.includes('\0')) return false;
    const target = normalize(join(this.root, decoded));
    if (!target.startsWith(this.root)) return false; // no way out of the PWA directory
    let file = target;
    let info = await stat(file).catch(() => undefined);
    if (info?.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file).catch(() => undefined);
    }
    if (!info?.isFile()) {
      // An in-app route (no extension, a page request): answer with the shell.
      const wantsPage = !extname(decoded) && (req.headers.accept ?? '').includes('text/html');
      if (!wantsPage) return false;
      file = join(this.root, 'index.html');
      info = await stat(file).catch(() => undefined);
      if (!info?.isFile()) return false;
    }
    const hashed = file.startsWith(join(this.root, 'assets') + sep);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': info.size,
      // Hashed assets never change; everything else must be revalidated so updates show.
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    await new Promise<void>((resolve) => {
      createReadStream(file)
        .on('error', () => {
          res.destroy();
          resolve();
        })
        .on('end', resolve)
        .pipe(res);
    });
    return true;
  }
}
