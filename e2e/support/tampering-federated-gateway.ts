/**
 * A lying federated gateway for tests: the real gateway, with its federation patched to
 * tamper with every answer one of its nodes sends back across the federation
 * (RTCMESH_TAMPER=swap-fingerprint | substitute-record). The caller, on another gateway,
 * must refuse such answers with an identity error, whatever the gateways say.
 */
import {
  createNodeRecord,
  fingerprintsInSdp,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';
import { Federation } from '../../src/node/gateway/federation/federation.ts';

const mode = process.env.RTCMESH_TAMPER;
const pair = await generateNodeKeyPair();
const impostor = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));

const forward = Federation.prototype.forwardFromNode;
Federation.prototype.forwardFromNode = function (this: Federation, node, msg) {
  if (msg.t !== 'answer') return forward.call(this, node, msg);
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
    forward.call(this, node, msg);
  })();
  return true;
};

console.error(`tampering federated gateway: ${mode}`);
await import('../../src/node/cli.ts');
