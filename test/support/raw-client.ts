/**
 * A client that speaks to a gateway the way an attacker (or a careful test) would: HTTP from
 * a chosen loopback source address, and a `ctl` session it drives message by message.
 */
import { request } from 'node:http';
import {
  createAuthorization,
  createNodeRecord,
  type NodeIdentity,
} from '../../src/core/identity/index.ts';
import { channelOpen, type DataChannelLike } from '../../src/core/node/rtc.ts';
import { makeNodeIdentity } from './node-node.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** `error.code` of a JSON error body. */
  code: string | undefined;
}

/** One HTTP request from `localAddress` (127.0.0.x), on a connection of its own. */
export function rawRequest(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    localAddress?: string;
  } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? 'GET',
        headers: { connection: 'close', ...options.headers },
        localAddress: options.localAddress,
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
          } catch {
            code = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, code });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A signed JSON POST as `identity`, from `localAddress`. */
export async function signedPost(
  gatewayUrl: string,
  identity: NodeIdentity,
  path: string,
  body: unknown,
  localAddress?: string,
): Promise<RawResponse> {
  return rawRequest(`${gatewayUrl}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: await createAuthorization(identity.key, gatewayUrl),
    },
    body: JSON.stringify(body),
    ...(localAddress ? { localAddress } : {}),
  });
}

/** A node's session with the gateway whose `ctl` the caller drives by hand. */
export async function openCtlSession(gatewayUrl: string, localAddress?: string) {
  const node = await makeNodeIdentity();
  const pc = node.rtc.createPeerConnection({ iceServers: [] });
  const ctl: DataChannelLike = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
  await pc.setLocalDescription();
  const record = await createNodeRecord(node.identity, {
    fingerprints: [node.certificate.fingerprint],
  });
  const res = await signedPost(
    gatewayUrl,
    node.identity,
    '/v1/connect',
    { offer: pc.localDescription?.sdp, record },
    localAddress,
  );
  if (res.status !== 200) throw new Error(`connect: ${res.status} ${res.text}`);
  const { answer } = JSON.parse(res.text) as { answer: string };
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await channelOpen(ctl, 20_000);
  const replies: { t: string; code?: string; n?: number; dialId?: string }[] = [];
  ctl.addEventListener('message', (ev) => replies.push(JSON.parse(String(ev.data))));
  return {
    ...node,
    record,
    ctl,
    replies,
    send: (msg: unknown) => ctl.send(typeof msg === 'string' ? msg : JSON.stringify(msg)),
    /** An offer whose fingerprint is this node's, as its dials must carry. */
    offer: pc.localDescription?.sdp ?? '',
    close: () => pc.close(),
  };
}
