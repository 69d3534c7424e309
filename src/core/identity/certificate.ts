/** DTLS certificate policy and fingerprint text, shared by the browser and Node adapters. */

const DAY_MS = 24 * 60 * 60 * 1000;
/** Browsers cap an RTCCertificate's life at 365 days (silently). */
export const CERTIFICATE_LIFETIME_MS = 365 * DAY_MS;
/** Renew with this much life left, so a record never lists a certificate about to die. */
export const CERTIFICATE_RENEW_BEFORE_MS = 30 * DAY_MS;

export function certificateNeedsRenewal(expiresMs: number, nowMs: number): boolean {
  return expiresMs - nowMs < CERTIFICATE_RENEW_BEFORE_MS;
}

const FINGERPRINT = /^(sha-(?:1|224|256|384|512)) ((?:[0-9A-F]{2}:)+[0-9A-F]{2})$/;

/** The record form, "sha-256 AB:CD:…", from an algorithm and hex value in any case. */
export function formatFingerprint(algorithm: string, value: string): string {
  return `${algorithm.toLowerCase()} ${value.toUpperCase()}`;
}

export function isFingerprint(text: string): boolean {
  return FINGERPRINT.test(text);
}

/** Every `a=fingerprint:` line of an SDP, in record form. */
export function fingerprintsInSdp(sdp: string): string[] {
  const out = new Set<string>();
  for (const m of sdp.matchAll(/^a=fingerprint:(\S+) (\S+)\s*$/gm)) {
    out.add(formatFingerprint(m[1] ?? '', m[2] ?? ''));
  }
  return [...out];
}
