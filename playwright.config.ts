import { defineConfig, type ReporterDescription } from '@playwright/test';
import { launchOptions, PERMISSIONS } from './e2e/support/browser.ts';

// Run through `npm test` (or `npm test -- e2e`), which builds the app and isolates the network
// first, and reads the JSON report it asks for in RTCMESH_REPORT_JSON.
const reporter: ReporterDescription[] = process.env.CI
  ? [['list']]
  : [['list'], ['html', { open: 'never' }]];
if (process.env.RTCMESH_REPORT_JSON)
  reporter.push(['json', { outputFile: process.env.RTCMESH_REPORT_JSON }]);

// Timeouts are for a loaded 2-core machine (TESTING.md): they bound waits for states and
// events, and a test that passes never waits for them.
export default defineConfig({
  testDir: 'e2e',
  timeout: 120_000,
  expect: { timeout: 20_000 },
  workers: 2,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter,
  use: {
    browserName: 'chromium',
    launchOptions: launchOptions(),
    permissions: PERMISSIONS,
    trace: 'retain-on-failure',
  },
});
