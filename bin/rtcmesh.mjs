#!/usr/bin/env node
// Entry point of the `rtcmesh` command: runs the bundle built from src/node by `npm install`
// (the prepare script) or `npm run build`.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/node/rtcmesh.mjs', import.meta.url);
if (!existsSync(bundle)) {
  console.error(
    'rtcmesh: not built yet; run `npm run build` (or `npm install`) in the rtcmesh folder',
  );
  process.exit(1);
}
await import(bundle.href);
