// Node 20 has WebCrypto on globalThis.crypto, but @types/node 20 does not name its key types
// globally; the platform-neutral core (src/core) uses the global names, as browsers define them.
type CryptoKey = import('node:crypto').webcrypto.CryptoKey;
type CryptoKeyPair = import('node:crypto').webcrypto.CryptoKeyPair;
