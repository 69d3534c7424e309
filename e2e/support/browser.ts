/**
 * How the e2e suite starts Chromium: Playwright's own build when installed, else Debian's
 * /usr/bin/chromium, with the flags and permissions WebRTC needs here (DESIGN §7).
 */
import { existsSync } from 'node:fs';
import { chromium, type LaunchOptions } from 'playwright-core';
import { repoPath } from './paths.ts';

export function findChromium(): string {
  const candidates = [
    process.env.RTCMESH_CHROMIUM,
    chromium.executablePath(),
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
  ];
  const found = candidates.find(
    (p): p is string => typeof p === 'string' && p !== '' && existsSync(p),
  );
  if (!found) {
    throw new Error(
      'no Chromium found: install Playwright’s (npx playwright install chromium) or Debian’s (apt-get install chromium)',
    );
  }
  return found;
}

export const CHROMIUM_ARGS = [
  '--allow-loopback-in-peer-connection',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** ICE on loopback gathers nothing without a media permission (DESIGN §7). */
export const PERMISSIONS = ['microphone'];

export function launchOptions(): LaunchOptions {
  process.env.RTCMESH_CHROMIUM = findChromium();
  return {
    executablePath: repoPath('e2e/support/chromium-wrapper.sh'),
    args: CHROMIUM_ARGS,
  };
}
