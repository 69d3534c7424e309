/**
 * A lying federated gateway for tests: the real gateway, with its federation patched to
 * tamper with every answer one of its nodes sends back across the federation
 * (RTCMESH_TAMPER=swap-fingerprint | substitute-record). The caller, on another gateway,
 * must refuse such answers with an identity error, whatever the gateways say.
 */

import { Federation } from '../../src/node/gateway/federation/federation.ts';
import { TAMPER_MODE, tamperAnswer } from './tamper-answer.ts';

const forward = Federation.prototype.forwardFromNode;
Federation.prototype.forwardFromNode = function (this: Federation, node, msg) {
  if (msg.t !== 'answer') return forward.call(this, node, msg);
  void (async () => {
    await tamperAnswer(msg);
    forward.call(this, node, msg);
  })();
  return true;
};

console.error(`tampering federated gateway: ${TAMPER_MODE}`);
await import('../../src/node/cli.ts');
