/**
 * What the service worker tells windows about calls that came by push (DESIGN §2), and the
 * URL it opens to answer one: shared by both sides so they cannot drift apart.
 */

export type ServiceWorkerCallMessage =
  /** A push arrived while this window is visible: the window takes the call, no notification. */
  | { type: 'rtcmesh:incoming'; dialId: string; from: string }
  /** The user pressed Accept on the notification: answer this call. */
  | { type: 'rtcmesh:answer'; dialId: string };

const DIAL_ID = /^[A-Za-z0-9_-]{16,64}$/;

export function isServiceWorkerCallMessage(data: unknown): data is ServiceWorkerCallMessage {
  if (typeof data !== 'object' || data === null) return false;
  const { type, dialId, from } = data as Record<string, unknown>;
  if (typeof dialId !== 'string' || !DIAL_ID.test(dialId)) return false;
  if (type === 'rtcmesh:answer') return true;
  return type === 'rtcmesh:incoming' && typeof from === 'string';
}

/** The app URL that answers a call as soon as the node is connected. */
export function answerUrl(dialId: string): string {
  return `/#answer=${encodeURIComponent(dialId)}`;
}

/** The call to answer, from a location hash made by answerUrl(). */
export function dialToAnswer(hash: string): string | undefined {
  const m = /^#answer=([A-Za-z0-9_-]{16,64})$/.exec(hash);
  return m?.[1];
}
