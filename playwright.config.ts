import { defineConfig } from '@playwright/test';
import { launchOptions, PERMISSIONS } from './e2e/support/browser.ts';

// Run through `npm run test:e2e`, which builds the app and isolates the network first.
export default defineConfig({
  testDir: 'e2e',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  workers: 2,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: process.env.CI ? [['list']] : [['list'], ['html', { open: 'never' }]],
  use: {
    browserName: 'chromium',
    launchOptions: launchOptions(),
    permissions: PERMISSIONS,
    trace: 'retain-on-failure',
  },
});
