/**
 * A lying gateway for tests: the real gateway, with its signaling patched to tamper with
 * every answer it forwards (RTCMESH_TAMPER=swap-fingerprint | substitute-record). A node
 * must refuse such answers with an identity error, whatever the gateway says.
 */

import { Signaling } from '../../src/node/gateway/signaling.ts';
import { TAMPER_MODE, tamperAnswer } from './tamper-answer.ts';

const forward = Signaling.prototype.handle;
Signaling.prototype.handle = function (this: Signaling, from, msg) {
  if (msg.t !== 'answer') return forward.call(this, from, msg);
  void (async () => {
    await tamperAnswer(msg);
    forward.call(this, from, msg);
  })();
};

console.error(`tampering gateway: ${TAMPER_MODE}`);
await import('../../src/node/cli.ts');
