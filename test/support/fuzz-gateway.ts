/**
 * Tools for throwing bad input at a real gateway process (issue #12): raw HTTP requests from
 * chosen loopback source addresses, real and deliberately broken SDP offers, a raw `ctl`
 * session, the gateway's resident memory, and the honest round trip (two real nodes dial and
 * exchange bytes). Shared by test/fuzz-gateway.test.ts and the abuse bench (bench/abuse).
 *
 * Everything here talks to loopback only (127.0.0.0/8).
 */
import { readFileSync } from 'node:fs';
import { type IncomingHttpHeaders, request } from 'node:http';
import { connect as netConnect } from 'node:net';
import {
  createAuthorization,
  createNodeRecord,
  type NodeIdentity,
} from '../../src/core/identity/index.ts';
import {
  channelOpen,
  type DataChannelLike,
  type PeerConnectionLike,
} from '../../src/core/node/rtc.ts';
import type { GatewayToNode } from '../../src/core/protocol/messages.ts';
import { type makeNodeIdentity, startNodeNode } from './node-node.ts';

export type NodeIdentityFiles = Awaited<ReturnType<typeof makeNodeIdentity>>;

/** The n-th loopback source address after 127.0.0.1: 127.0.0.2, 127.0.0.3, … (n from 0). */
export function loopbackSource(n: number, first = 2, last = 250): string {
  return `127.0.0.${first + (Math.abs(Math.trunc(n)) % (last - first + 1))}`;
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}
export type HttpOutcome = HttpReply | { error: string };

export interface RawRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** The loopback source address (default 127.0.0.1). */
  localAddress?: string;
  /** The client gives up (and closes) after this long; the outcome is then `{error:'timeout'}`. */
  timeoutMs?: number;
}

/** One HTTP request on its own connection from `localAddress`; never throws. */
export function httpRequest(baseUrl: string, r: RawRequest): Promise<HttpOutcome> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: HttpOutcome) => {
      if (done) return;
      done = true;
      resolve(o);
    };
    let req: ReturnType<typeof request>;
    try {
      req = request({
        host: url.hostname,
        port: url.port,
        method: r.method ?? 'GET',
        path: r.path,
        headers: r.headers ?? {},
        localAddress: r.localAddress ?? '127.0.0.1',
        agent: false,
      });
    } catch (err) {
      // Node's client refuses some header names and values before sending anything.
      return finish({ error: `client refused: ${(err as Error).message}` });
    }
    const timer = setTimeout(() => {
      req.destroy();
      finish({ error: 'timeout' });
    }, r.timeoutMs ?? 15_000);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        finish({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString('utf8'),
        });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        finish({ error: err.message });
      });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      finish({ error: err.message });
    });
    if (r.body !== undefined) req.end(r.body);
    else req.end();
  });
}

/**
 * Raw bytes on a TCP connection from `localAddress`; resolves with what came back before the
 * gateway closed the connection or `timeoutMs` passed (then the client closes it).
 */
export function rawHttp(
  baseUrl: string,
  chunks: (string | Uint8Array)[],
  options: { localAddress?: string; timeoutMs?: number; gapMs?: number } = {},
): Promise<{ text: string; closedByServer: boolean; error?: string }> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    let closedByServer = false;
    let error: string | undefined;
    const socket = netConnect({
      host: url.hostname,
      port: Number(url.port),
      localAddress: options.localAddress ?? '127.0.0.1',
    });
    const timer = setTimeout(() => socket.destroy(), options.timeoutMs ?? 3000);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => {
      closedByServer = true;
    });
    socket.on('error', (err) => {
      error = err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({
        text: Buffer.concat(received).toString('latin1'),
        closedByServer,
        ...(error ? { error } : {}),
      });
    });
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
      }
    });
  });
}

/** The status of the first HTTP response in raw bytes (undefined when there is none). */
export function statusLine(text: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m?.[1] ? Number(m[1]) : undefined;
}

/**
 * Whether an HTTP reply is what the gateway promises a stranger: a status below 500, and an
 * error status carries a JSON body `{error: {code, message}}`. Returns the problem, if any.
 */
export function replyProblem(reply: HttpReply, method = 'GET'): string | undefined {
  if (reply.status >= 500 || reply.status < 100) return `status ${reply.status}`;
  if (reply.status < 400 || method === 'HEAD') return undefined;
  try {
    const body = JSON.parse(reply.text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code !== 'string' || typeof body.error?.message !== 'string')
      return `error body without {error:{code,message}}: ${reply.text.slice(0, 200)}`;
  } catch {
    return `error body is not JSON: ${JSON.stringify(reply.text.slice(0, 200))}`;
  }
  return undefined;
}

/** Resident memory of a process in bytes (Linux /proc), or NaN when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Peak resident memory (VmHWM) of a process in bytes, or NaN when it is gone. */
export function peakRssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const MiB = 1024 * 1024;

/**
 * A real offer as a node makes it for /v1/connect: node-datachannel, the node's own
 * certificate, a negotiated `ctl` channel. The peer connection is closed again.
 */
export async function realOffer(node: NodeIdentityFiles): Promise<string> {
  const pc = node.rtc.createPeerConnection({ iceServers: [] });
  try {
    pc.createDataChannel('ctl', { negotiated: true, id: 0 });
    await pc.setLocalDescription();
    const sdp = pc.localDescription?.sdp;
    if (!sdp) throw new Error('no local offer');
    return sdp;
  } finally {
    pc.close();
  }
}

/**
 * The four offers libdatachannel refuses that ended the gateway ~5 s after its 400 (issue #12):
 * no `m=` line, no ICE credentials, an empty `ice-pwd`, a non-numeric `max-message-size`.
 * Each keeps the node's fingerprint, so it passes the record check and reaches libdatachannel.
 */
export function refusedOffers(offer: string, fingerprint: string): Record<string, string> {
  const lines = offer.split(/\r?\n/).filter((l) => l !== '');
  const join = (ls: string[]) => `${ls.join('\r\n')}\r\n`;
  return {
    'no m= line': `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:${fingerprint}\r\n`,
    'no ICE credentials': join(lines.filter((l) => !/^a=ice-(ufrag|pwd):/.test(l))),
    'empty ice-pwd': join(lines.map((l) => (l.startsWith('a=ice-pwd:') ? 'a=ice-pwd:' : l))),
    'non-numeric max-message-size': join(
      lines
        .filter((l) => !l.startsWith('a=max-message-size:'))
        .flatMap((l) => (l.startsWith('m=') ? [l, 'a=max-message-size:lots'] : [l])),
    ),
  };
}

/** A signer for one identity: a fresh single-use Authorization per request, and its record. */
export async function signerFor(gatewayUrl: string, node: NodeIdentityFiles) {
  const record = await createNodeRecord(node.identity, {
    fingerprints: [node.certificate.fingerprint],
  });
  return {
    node,
    id: node.identity.id,
    record,
    auth: () => createAuthorization(node.identity.key, gatewayUrl),
  };
}
export type Signer = Awaited<ReturnType<typeof signerFor>>;

/** A signed JSON POST (or GET without body) from a loopback source address. */
export async function signedRequest(
  gatewayUrl: string,
  signer: Signer,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  localAddress?: string,
): Promise<HttpOutcome> {
  return httpRequest(gatewayUrl, {
    method,
    path,
    headers: {
      authorization: await signer.auth(),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    ...(localAddress ? { localAddress } : {}),
  });
}

/**
 * A raw `ctl` session: a real association with the gateway through POST /v1/connect, whose
 * control channel the caller drives by hand (mutated JSON, binary). The node's own offer is
 * not trickled; the gateway learns the address from the node's checks (bound to 127.0.0.1).
 */
export async function openRawCtl(gatewayUrl: string, node: NodeIdentityFiles) {
  const signer = await signerFor(gatewayUrl, node);
  const pc: PeerConnectionLike = node.rtc.createPeerConnection({ iceServers: [] });
  const ctl: DataChannelLike = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
  await pc.setLocalDescription();
  const res = await signedRequest(gatewayUrl, signer, 'POST', '/v1/connect', {
    offer: pc.localDescription?.sdp,
    record: signer.record,
  });
  if ('error' in res || res.status !== 200) {
    pc.close();
    throw new Error(`connect refused: ${'error' in res ? res.error : `${res.status} ${res.text}`}`);
  }
  const { answer } = JSON.parse(res.text) as { answer: string };
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await channelOpen(ctl, 15_000);
  const replies: GatewayToNode[] = [];
  let closed = false;
  ctl.addEventListener('message', (ev) => {
    try {
      replies.push(JSON.parse(String((ev as MessageEvent).data)) as GatewayToNode);
    } catch {
      // a reply that is not JSON would show as a missing pong
    }
  });
  ctl.addEventListener('close', () => {
    closed = true;
  });
  return {
    pc,
    ctl,
    replies,
    signer,
    get closed() {
      return closed || ctl.readyState === 'closed' || ctl.readyState === 'closing';
    },
    close() {
      try {
        ctl.close();
      } catch {
        // gone
      }
      pc.close();
    },
  };
}
export type RawCtl = Awaited<ReturnType<typeof openRawCtl>>;

/** Waits for a condition, polling; false when it did not hold within `ms`. */
export async function waitFor(check: () => boolean, ms: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return check();
}

/**
 * The honest round trip: two real Node mesh nodes connect to the gateway, one dials the
 * other on a service and the bytes come back over the stream. Resolves with what came back.
 */
export async function honestRoundTrip(
  gatewayUrl: string,
  payload = 'hello through the mesh',
): Promise<string> {
  const a = await startNodeNode(gatewayUrl);
  const b = await startNodeNode(gatewayUrl);
  try {
    b.node.listen('echo', async (stream) => {
      for await (const message of stream.readable) await stream.send(message);
    });
    const stream = await a.node.dial(b.identity.id, 'echo');
    await stream.send(payload);
    const reader = stream.readable.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    stream.close();
    return typeof value === 'string' ? value : new TextDecoder().decode(value as Uint8Array);
  } finally {
    a.node.stop();
    b.node.stop();
  }
}

export type { NodeIdentity };
