import { defineConfig } from 'vitest/config';

// The PWA: index.html is the window; the node worker is bundled from src/worker by Vite.
// The service worker is built separately (scripts/build.mjs) so it is one classic file
// whose precache manifest lists the final hashed assets.
export default defineConfig({
  build: {
    outDir: 'dist/pwa',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
  worker: { format: 'es' },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
  },
});
