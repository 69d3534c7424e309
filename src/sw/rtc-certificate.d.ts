/**
 * The service worker opens the node's IndexedDB (src/browser/db.ts), whose certificate
 * store holds RTCCertificate objects: a window-only type (DESIGN §7) missing from the
 * WebWorker lib. The service worker never reads one; this only lets db.ts compile here.
 */
interface RTCCertificate {
  readonly expires: number;
}
