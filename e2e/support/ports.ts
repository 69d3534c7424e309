/** Ports for servers a test starts (redis-server, pebble…): free on loopback at the moment asked. */
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 now (closed again at once; the server binds it next). */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
