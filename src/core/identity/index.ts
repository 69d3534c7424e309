/** Identity (DESIGN §1): one module for the browser and Node. */
export { decodeBase32, encodeBase32 } from './base32.ts';
export { decodeBase64url, encodeBase64url } from './base64url.ts';
export {
  CERTIFICATE_LIFETIME_MS,
  CERTIFICATE_RENEW_BEFORE_MS,
  certificateNeedsRenewal,
  fingerprintsInSdp,
  formatFingerprint,
  isFingerprint,
} from './certificate.ts';
export { IdentityError, type IdentityErrorCode } from './errors.ts';
export {
  formatIp6,
  idPrefixFromMeshIp6,
  isMeshIp6Of,
  meshIp6,
  type NodeId,
  nodeIdFromPublicKey,
  type PeerName,
  parseIp6,
  parseNodeId,
  parsePeerName,
} from './node-id.ts';
export {
  generateNodeKeyPair,
  identityOf,
  type NodeIdentity,
  type NodeKey,
  nodeKeyFromCryptoKeys,
} from './node-key.ts';
export {
  checkRecordClaims,
  createNodeRecord,
  MAX_RECORD_LIFETIME_S,
  RECORD_LIFETIME_S,
  RecordCache,
  type VerifiedRecord,
  verifyNodeRecord,
} from './record.ts';
export { MemoryReplayGuard, type ReplayGuard } from './replay-guard.ts';
export {
  audienceOf,
  createAuthorization,
  MAX_TOKEN_LIFETIME_S,
  type VerifiedRequest,
  verifyAuthorization,
} from './request-token.ts';
export { createSelfSignedCertificate, type SelfSignedCertificate } from './x509.ts';
