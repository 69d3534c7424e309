/**
 * What the lying gateways of the tests do to an answer (RTCMESH_TAMPER): swap the DTLS
 * fingerprint in its SDP, or substitute a well-formed record signed by another key. A node
 * must refuse either with an identity error, whatever the gateways say.
 */
import {
  createNodeRecord,
  fingerprintsInSdp,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';

export const TAMPER_MODE = process.env.RTCMESH_TAMPER;
const pair = await generateNodeKeyPair();
const impostor = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));

/** Tampers with an answer message in place, as RTCMESH_TAMPER says. */
export async function tamperAnswer(msg: { answer: string; record: string }): Promise<void> {
  if (TAMPER_MODE === 'swap-fingerprint') {
    const fake = `sha-256 ${Array.from({ length: 32 }, () =>
      Math.floor(Math.random() * 256)
        .toString(16)
        .padStart(2, '0')
        .toUpperCase(),
    ).join(':')}`;
    msg.answer = msg.answer.replace(/^a=fingerprint:.*$/gm, `a=fingerprint:${fake}`);
  } else if (TAMPER_MODE === 'substitute-record') {
    // A well-formed record, signed by another key, listing the real fingerprint.
    msg.record = await createNodeRecord(impostor, {
      fingerprints: fingerprintsInSdp(msg.answer),
      name: 'impostor',
    });
  }
}
