/**
 * Where the RTC host tab serves its data channels (DESIGN §6, §7): in its channel worker
 * where the engine can move an RTCDataChannel there, else in the tab itself. Firefox (ESR
 * 140) has no RTCDataChannel in workers and refuses the transfer with a DataCloneError;
 * this is found by feature detection (browser/features.ts) and, should a transfer still be
 * refused, by that refusal, which settles it for the tab; never by user agent.
 * Either way the channel is bridged to the same two ports (browser/port-channel.ts), so the
 * node worker and the other tabs see no difference.
 */

import { bridgeChannel } from '../browser/port-channel.ts';
import { detectFeatures, noteFeature } from './features.ts';

export class ChannelServer {
  private worker: Worker | undefined = detectFeatures().dataChannelTransfer
    ? new Worker(new URL('../channel-worker/channel-worker.ts', import.meta.url), {
        type: 'module',
        name: 'rtcmesh-channels',
      })
    : undefined;

  /** Bridges `channel` to the ports now: later, or after a send, it could not move. */
  serve(channel: RTCDataChannel, data: MessagePort, status: MessagePort): void {
    const worker = this.worker;
    if (worker) {
      try {
        worker.postMessage({ channel, data, status }, [
          channel as unknown as Transferable,
          data,
          status,
        ]);
        noteFeature('dataChannelTransfer', true);
        return;
      } catch (err) {
        // A refused transfer moves nothing: the channel and ports are still ours.
        if (!(err instanceof DOMException && err.name === 'DataCloneError')) throw err;
        console.info('rtcmesh: data channels cannot move to a worker here; this tab serves them');
        noteFeature('dataChannelTransfer', false);
        worker.terminate();
        this.worker = undefined;
      }
    }
    bridgeChannel(channel, data, status);
  }

  /** Ends the channel worker; channels served here end with their peer connections. */
  close(): void {
    this.worker?.terminate();
    this.worker = undefined;
  }
}
