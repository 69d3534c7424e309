/**
 * The channel worker: a dedicated worker of the RTC host tab (DESIGN §6). The host moves
 * each data channel here as it is made; this worker pumps it to and from two ports, so the
 * node worker and other tabs can use it, and the host tab's own thread stays out of the way.
 */
import { bridgeChannel } from '../browser/port-channel.ts';

interface Bridged {
  channel: RTCDataChannel;
  data: MessagePort;
  status: MessagePort;
}

self.onmessage = (ev: MessageEvent<Bridged>) => {
  const { channel, data, status } = ev.data;
  bridgeChannel(channel, data, status);
};
