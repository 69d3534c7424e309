/**
 * A lying gateway for tests: the real gateway, with its signaling patched to tamper with
 * every answer it forwards (RTCMESH_TAMPER=swap-fingerprint | substitute-record). A node
 * must refuse such answers with an identity error, whatever the gateway says.
 */
import {
  createNodeRecord,
  fingerprintsInSdp,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';
import { Signaling } from '../../src/node/gateway/signaling.ts';

const mode = process.env.RTCMESH_TAMPER;
const pair = await generateNodeKeyPair();
const impostor = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));

const forward = Signaling.prototype.handle;
Signaling.prototype.handle = function (this: Signaling, from, msg) {
  if (msg.t !== 'answer') return forward.call(this, from, msg);
  void (async () => {
    if (mode === 'swap-fingerprint') {
      const fake = `sha-256 ${Array.from({ length: 32 }, () =>
        Math.floor(Math.random() * 256)
          .toString(16)
          .padStart(2, '0')
          .toUpperCase(),
      ).join(':')}`;
      msg.answer = msg.answer.replace(/^a=fingerprint:.*$/gm, `a=fingerprint:${fake}`);
    } else if (mode === 'substitute-record') {
      // A well-formed record, signed by another key, listing the real fingerprint.
      msg.record = await createNodeRecord(impostor, {
        fingerprints: fingerprintsInSdp(msg.answer),
        name: 'impostor',
      });
    }
    forward.call(this, from, msg);
  })();
};

console.error(`tampering gateway: ${mode}`);
await import('../../src/node/cli.ts');
