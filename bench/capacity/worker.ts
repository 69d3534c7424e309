/**
 * A load-generator process of the capacity harness (forked by run.ts): holds many synthetic
 * nodes, each with a real WebRTC association to the gateway (node-datachannel, POST
 * /v1/connect, the negotiated `ctl` channel), keeps them alive with pings as real nodes do,
 * and makes dials between its own nodes over `ctl` on the main process's orders.
 */
import { randomBytes } from 'node:crypto';
import { type DataChannel, PeerConnection } from 'node-datachannel';
import { fingerprintsInSdp, type NodeIdentity } from '../../src/core/identity/index.ts';
import type { GatewayToNode, NodeToGateway } from '../../src/core/protocol/messages.ts';
import {
  authorization,
  errorText,
  keepAliveAgent,
  pool,
  signedPost,
  syntheticIdentity,
  syntheticRecord,
} from './synthetic.ts';

export type WorkerCommand =
  | { cmd: 'connect'; gatewayUrl: string; count: number; concurrency: number }
  | {
      cmd: 'dials';
      /** Open loop: dials per second from this worker. */
      rate?: number;
      /** Closed loop: dials each caller keeps outstanding. */
      outstanding?: number;
      durationMs: number;
    }
  | { cmd: 'close' };

export type WorkerReply =
  | {
      type: 'connected';
      ok: number;
      failed: number;
      errors: Record<string, number>;
      /** POST /v1/connect until ctl is open, ms. */
      latencies: number[];
    }
  | {
      type: 'dials';
      sent: number;
      answered: number;
      errors: Record<string, number>;
      /** dial sent until its answer arrived, ms. */
      latencies: number[];
      elapsedMs: number;
      sessionsOpen: number;
    }
  | { type: 'closed' }
  | { type: 'error'; message: string };

interface SyntheticNode {
  identity: NodeIdentity;
  record: string;
  offer: string;
  pc: PeerConnection;
  ctl: DataChannel;
  open: boolean;
  pings: number;
  /** Dials this node made that wait for their answer: dialId → performance.now() at send. */
  pending: Map<string, number>;
}

const OPEN_TIMEOUT_MS = 20_000;
const nodes: SyntheticNode[] = [];
const errors: Record<string, number> = {};
const countError = (key: string) => {
  errors[key] = (errors[key] ?? 0) + 1;
};

let dialRun:
  | {
      latencies: number[];
      answered: number;
      onAnswer?: (caller: SyntheticNode) => void;
    }
  | undefined;

function send(node: SyntheticNode, msg: NodeToGateway): boolean {
  if (!node.open) return false;
  try {
    return node.ctl.sendMessage(JSON.stringify(msg));
  } catch {
    node.open = false;
    return false;
  }
}

function receive(node: SyntheticNode, text: string): void {
  const msg = JSON.parse(text) as GatewayToNode;
  switch (msg.t) {
    case 'incoming':
      // The callee answers at once with a canned answer (its own description) and its record:
      // what is measured is the gateway's signaling round trip, not ICE between the nodes.
      send(node, { t: 'answer', dialId: msg.dialId, answer: node.offer, record: node.record });
      return;
    case 'answer': {
      const sentAt = node.pending.get(msg.dialId);
      if (sentAt === undefined) return;
      node.pending.delete(msg.dialId);
      if (dialRun) {
        dialRun.latencies.push(performance.now() - sentAt);
        dialRun.answered++;
        dialRun.onAnswer?.(node);
      }
      return;
    }
    case 'dial-failed':
      node.pending.delete(msg.dialId);
      countError(`dial-failed ${msg.code}`);
      return;
    case 'error':
      countError(`error ${msg.code}`);
      return;
    default:
      return; // pong, ringing, candidate, cancel
  }
}

async function connectOne(gatewayUrl: string, agent: ReturnType<typeof keepAliveAgent>) {
  const identity = await syntheticIdentity();
  const pc = new PeerConnection(`cap-${identity.id.slice(0, 8)}`, {
    iceServers: [],
    bindAddress: '127.0.0.1',
  });
  try {
    const described = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no offer')), OPEN_TIMEOUT_MS);
      pc.onLocalDescription((sdp, type) => {
        if (type !== 'offer') return;
        clearTimeout(timer);
        resolve(sdp);
      });
    });
    const ctl = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
    const opened = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('ctl did not open')), OPEN_TIMEOUT_MS);
      ctl.onOpen(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    opened.catch(() => {});
    const offer = await described;
    const record = await syntheticRecord(identity, fingerprintsInSdp(offer));
    const started = performance.now();
    const res = await signedPost(
      agent,
      new URL('/v1/connect', gatewayUrl).href,
      () => authorization(identity, gatewayUrl),
      { offer, record },
    );
    if (res.status !== 200) throw new Error(`connect ${errorText(res.status, res.body)}`);
    pc.setRemoteDescription((res.body as { answer: string }).answer, 'answer');
    await opened;
    const node: SyntheticNode = {
      identity,
      record,
      offer,
      pc,
      ctl,
      open: true,
      pings: 0,
      pending: new Map(),
    };
    ctl.onMessage((data) => {
      if (typeof data === 'string') receive(node, data);
    });
    ctl.onClosed(() => {
      if (node.open) countError('ctl closed');
      node.open = false;
    });
    nodes.push(node);
    return performance.now() - started;
  } catch (err) {
    pc.close();
    throw err;
  }
}

/** Every node pings every 5 s, as GatewayClient does (the gateway drops silent sessions). */
let pingRound = 0;
const pingTimer = setInterval(() => {
  const slot = pingRound++ % 5;
  for (let i = slot; i < nodes.length; i += 5) {
    const node = nodes[i];
    if (node) send(node, { t: 'ping', n: ++node.pings });
  }
}, 1000);

async function connect(cmd: Extract<WorkerCommand, { cmd: 'connect' }>): Promise<WorkerReply> {
  const agent = keepAliveAgent(cmd.concurrency);
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  await pool(cmd.count, cmd.concurrency, async () => {
    try {
      latencies.push(await connectOne(cmd.gatewayUrl, agent));
      ok++;
    } catch (err) {
      failed++;
      countError((err as Error).message);
    }
  });
  agent.destroy();
  return { type: 'connected', ok, failed, errors: { ...errors }, latencies };
}

const dialId = () => randomBytes(16).toString('base64url');

async function dials(cmd: Extract<WorkerCommand, { cmd: 'dials' }>): Promise<WorkerReply> {
  for (const key of Object.keys(errors)) delete errors[key];
  const open = nodes.filter((n) => n.open);
  const half = Math.floor(open.length / 2);
  const callers = open.slice(0, half);
  const callees = open.slice(half, 2 * half);
  const calleeOf = new Map(callers.map((c, i) => [c, callees[i] as SyntheticNode]));
  const run: NonNullable<typeof dialRun> = { latencies: [], answered: 0 };
  dialRun = run;
  let sent = 0;
  let running = true;
  const dial = (caller: SyntheticNode) => {
    const callee = calleeOf.get(caller);
    if (!callee) return;
    const id = dialId();
    caller.pending.set(id, performance.now());
    const ok = send(caller, {
      t: 'dial',
      dialId: id,
      to: callee.identity.id,
      offer: caller.offer,
      record: caller.record,
    });
    if (ok) sent++;
    else caller.pending.delete(id);
  };
  const started = performance.now();
  if (cmd.outstanding) {
    const outstanding = cmd.outstanding;
    run.onAnswer = (caller) => {
      if (running) dial(caller);
    };
    for (let k = 0; k < outstanding; k++) for (const caller of callers) dial(caller);
    await new Promise((r) => setTimeout(r, cmd.durationMs));
  } else {
    const rate = cmd.rate ?? 0;
    let next = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - started;
        const due = Math.min(Math.floor((rate * Math.min(elapsed, cmd.durationMs)) / 1000), 1e9);
        while (sent < due && callers.length > 0) {
          const before = sent;
          dial(callers[next++ % callers.length] as SyntheticNode);
          if (sent === before) break;
        }
        if (elapsed >= cmd.durationMs) {
          clearInterval(timer);
          resolve();
        }
      }, 2);
    });
  }
  running = false;
  const elapsedMs = performance.now() - started;
  // Let the last answers arrive.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && callers.some((c) => c.pending.size > 0))
    await new Promise((r) => setTimeout(r, 20));
  let unanswered = 0;
  for (const c of callers) {
    unanswered += c.pending.size;
    c.pending.clear();
  }
  if (unanswered) errors.unanswered = unanswered;
  dialRun = undefined;
  return {
    type: 'dials',
    sent,
    answered: run.answered,
    errors: { ...errors },
    latencies: run.latencies,
    elapsedMs,
    sessionsOpen: nodes.filter((n) => n.open).length,
  };
}

function close(): WorkerReply {
  clearInterval(pingTimer);
  for (const node of nodes) {
    node.open = false;
    try {
      node.ctl.close();
      node.pc.close();
    } catch {
      // already gone
    }
  }
  return { type: 'closed' };
}

process.on('message', (cmd: WorkerCommand) => {
  const reply = (r: WorkerReply) => process.send?.(r);
  const work =
    cmd.cmd === 'connect'
      ? connect(cmd)
      : cmd.cmd === 'dials'
        ? dials(cmd)
        : Promise.resolve(close());
  work.then(reply, (err: unknown) => reply({ type: 'error', message: String(err) }));
});
