/** UDP sockets as the TURN server uses them: bound before use, heard when they fail. */
import { createSocket, type Socket } from 'node:dgram';

/** A bound UDP socket; `onError` hears its errors from then on (unheard, one would crash). */
export async function bindUdp(
  host: string,
  port: number,
  onError: (err: Error) => void = () => {},
): Promise<Socket> {
  const socket = host.includes(':')
    ? createSocket({ type: 'udp6', ipv6Only: true })
    : createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', onError);
  return socket;
}

export function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
