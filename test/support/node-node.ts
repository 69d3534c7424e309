/** A real mesh node in this Node process (node-datachannel), for tests that talk to a gateway. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshNode, type MeshNodeOptions } from '../../src/core/node/mesh-node.ts';
import type { RtcPlatform } from '../../src/core/node/rtc.ts';
import { loadOrCreateCertificate } from '../../src/node/certificate-store.ts';
import { loadOrCreateIdentity } from '../../src/node/identity-store.ts';
import { nodeRtcPlatform } from '../../src/node/rtc-platform.ts';

export async function makeNodeIdentity(dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-node-'))) {
  const { identity, keyFile } = await loadOrCreateIdentity(dataDir);
  const certificate = await loadOrCreateCertificate(dataDir, identity);
  const rtc = nodeRtcPlatform({
    certFile: certificate.certFile,
    keyFile,
    bindAddress: '127.0.0.1',
  });
  return { identity, keyFile, certificate, rtc, dataDir };
}

/** `adjustRtc`: the node's own platform, changed (a setting, or a way to watch connections). */
export async function startNodeNode(
  gatewayUrl: string,
  options: Partial<MeshNodeOptions> = {},
  adjustRtc: (rtc: RtcPlatform) => RtcPlatform = (rtc) => rtc,
) {
  const made = await makeNodeIdentity();
  const node = new MeshNode({
    gatewayUrl,
    identity: made.identity,
    fingerprints: [made.certificate.fingerprint],
    rtc: adjustRtc(made.rtc),
    decide: () => 'accept',
    ...options,
  });
  const connected = new Promise<void>((resolve) => {
    node.on('status', (s) => {
      if (s === 'connected') resolve();
    });
  });
  node.start();
  await connected;
  return { node, ...made };
}
