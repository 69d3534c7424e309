/** UDP sockets as the TURN server uses them: bound before use, heard when they fail. */
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns';
import { isIP } from 'node:net';

/**
 * The server sends only to IP addresses, yet dgram resolves each send's address through
 * `dns.lookup` (a deferred callback per datagram): pass IP literals straight through.
 */
const ipLookup = ((address: string, family: number, callback: LookupCallback) => {
  const ipFamily = isIP(address);
  if (ipFamily) callback(null, address, ipFamily);
  else lookup(address, family, callback);
}) as unknown as typeof lookup;
type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * The buffers of the STUN/TURN socket, which every client's datagrams share (coturn asks 2 MiB
 * for its listeners): a burst that arrives while the event loop is busy waits instead of
 * being dropped. Linux grants at most `net.core.rmem_max` / `wmem_max` (212,992 bytes by
 * default). Relay sockets, one per allocation, keep the system's default.
 */
export const SERVER_SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * A bound UDP socket; `onError` hears its errors from then on (unheard, one would crash).
 * `bufferBytes`: its receive and send buffers, as far as the system allows.
 */
export async function bindUdp(
  host: string,
  port: number,
  onError: (err: Error) => void = () => {},
  bufferBytes?: number,
): Promise<Socket> {
  const socket = host.includes(':')
    ? createSocket({ type: 'udp6', ipv6Only: true, lookup: ipLookup })
    : createSocket({ type: 'udp4', lookup: ipLookup });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', onError);
  if (bufferBytes !== undefined) {
    try {
      socket.setRecvBufferSize(bufferBytes);
      socket.setSendBufferSize(bufferBytes);
    } catch {
      // the system's default buffers: still a working socket
    }
  }
  return socket;
}

export function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
