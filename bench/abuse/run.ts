/**
 * `npm run bench:abuse` (issue #12): the soak. One real gateway process (default limits; push
 * to loopback allowed, so the push-error attack has a push service to reach). Honest nodes —
 * real Node mesh nodes on 127.0.0.1, 127.0.0.251 and 127.0.0.252 — register, connect, dial
 * each other (a full dial through the gateway, then an echo over a stream) and allocate TURN,
 * first alone (baseline), then while the attacker process (bench/abuse/attacker.ts) runs every
 * attack of the issue from fresh identities on 127.0.0.2–127.0.0.250.
 *
 * Prints, per phase: honest success rate per operation (target 100%), honest dial p50/p95,
 * the gateway's peak RSS; then the attack counts and what the gateway showed afterwards.
 * A benchmark, not a test: it exits 0 and says loudly when honest success is below 100%.
 *
 *   --quick                     10 s phases, fewer attackers
 *   --seconds N  (ABUSE_SECONDS)          attack phase length (default 60)
 *   --baseline N (ABUSE_BASELINE_SECONDS) baseline phase length (default 30; quick 10)
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from '../../e2e/support/gateway-process.ts';
import { createAuthorization, createNodeRecord } from '../../src/core/identity/index.ts';
import { MeshNode } from '../../src/core/node/mesh-node.ts';
import { loadOrCreateCertificate } from '../../src/node/certificate-store.ts';
import { loadOrCreateIdentity } from '../../src/node/identity-store.ts';
import { nodeRtcPlatform } from '../../src/node/rtc-platform.ts';
import { Method } from '../../src/node/stun/index.ts';
import { Lifetime, RequestedTransport } from '../../src/node/turn/codec/attributes.ts';
import {
  httpRequest,
  isAlive,
  MiB,
  peakRssBytes,
  rssBytes,
} from '../../test/support/fuzz-gateway.ts';
import { codeOf, TestTurnClient } from '../../test/support/turn-client.ts';
import type { AttackConfig, AttackReport } from './attacker.ts';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick') || process.env.ABUSE_QUICK === '1';
const flag = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : undefined;
};
const ATTACK_S = flag('--seconds') ?? Number(process.env.ABUSE_SECONDS ?? (QUICK ? 10 : 60));
const BASELINE_S =
  flag('--baseline') ?? Number(process.env.ABUSE_BASELINE_SECONDS ?? (QUICK ? 10 : 30));
const SCALE = QUICK ? 1 : 2;
const HONEST_ADDRESSES = ['127.0.0.1', '127.0.0.251', '127.0.0.252'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no result in ${ms} ms`)), ms),
    ),
  ]);
}

/** fetch() whose connections leave from `address` (MeshNode takes a fetch). */
function fetchFrom(address: string): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(
      typeof input === 'string' ? input : input instanceof URL ? input.href : input.url,
    );
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => {
      headers[k] = v;
    });
    const r = await httpRequest(url.origin, {
      method: init?.method ?? 'GET',
      path: url.pathname + url.search,
      headers,
      ...(typeof init?.body === 'string' ? { body: init.body } : {}),
      localAddress: address,
      timeoutMs: 20_000,
    });
    if ('error' in r) throw new TypeError(`fetch failed: ${r.error}`);
    const out = new Headers();
    for (const [k, v] of Object.entries(r.headers))
      if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
    return new Response(r.status === 204 || r.status === 304 ? null : r.text, {
      status: r.status,
      headers: out,
    });
  }) as typeof fetch;
}

/** Honest IDs: the victim answers them, and leaves strangers ringing (a person away). */
const honestIds = new Set<string>();

async function honestNode(gatewayUrl: string, address: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-honest-'));
  const { identity, keyFile } = await loadOrCreateIdentity(dataDir);
  const certificate = await loadOrCreateCertificate(dataDir, identity);
  const rtc = nodeRtcPlatform({ certFile: certificate.certFile, keyFile, bindAddress: address });
  const node = new MeshNode({
    gatewayUrl,
    identity,
    fingerprints: [certificate.fingerprint],
    rtc,
    decide: (caller) => (honestIds.has(caller.id) ? 'accept' : 'ask'),
    fetch: fetchFrom(address),
  });
  node.listen('echo', async (stream) => {
    for await (const message of stream.readable) await stream.send(message);
  });
  const connected = new Promise<void>((resolve) => {
    node.on('status', (s) => {
      if (s === 'connected') resolve();
    });
  });
  node.start();
  try {
    await withTimeout(connected, 20_000, 'connect');
  } catch (err) {
    node.stop();
    throw err;
  }
  honestIds.add(identity.id);
  const record = await createNodeRecord(identity, { fingerprints: [certificate.fingerprint] });
  return { node, identity, record, address };
}
type Honest = Awaited<ReturnType<typeof honestNode>>;

interface Phase {
  name: string;
  ops: Record<string, { ok: number; failed: number; why: Record<string, number> }>;
  dialMs: number[];
  peakRss: number;
  /** Gauges at the end of the phase. */
  turnAllocations?: number;
  pendingDials?: number;
  turnRequests?: number;
  /** Honest TURN requests sent again after 2 s without an answer. */
  turnRetries: number;
}
function tally(phase: Phase, op: string, ok: boolean, why = 'ok'): void {
  const o = phase.ops[op] ?? { ok: 0, failed: 0, why: {} };
  phase.ops[op] = o;
  if (ok) o.ok++;
  else {
    o.failed++;
    o.why[why] = (o.why[why] ?? 0) + 1;
  }
}
const short = (err: unknown) => ((err as Error).message ?? String(err)).slice(0, 160);

async function honestPhase(
  name: string,
  seconds: number,
  gatewayUrl: string,
  pid: number,
  turnPort: number,
  turnSecret: string,
  nodes: Honest[],
): Promise<Phase> {
  const phase: Phase = { name, ops: {}, dialMs: [], peakRss: 0, turnRetries: 0 };
  const deadline = Date.now() + seconds * 1000;
  const rssTimer = setInterval(() => {
    phase.peakRss = Math.max(phase.peakRss, rssBytes(pid) || 0);
  }, 250);
  const [a, b, c, d] = nodes as [Honest, Honest, Honest, Honest];
  // b is the victim the attackers ring; a and c dial it, d dials c.
  const pairs: [Honest, Honest][] = [
    [a, b],
    [c, b],
    [d, c],
  ];
  const dials = pairs.map(async ([from, to]) => {
    while (Date.now() < deadline) {
      const t0 = performance.now();
      try {
        const link = await withTimeout(from.node.connect(to.identity.id), 30_000, 'dial');
        const ms = performance.now() - t0;
        const stream = await withTimeout(from.node.dial(to.identity.id, 'echo'), 10_000, 'stream');
        await stream.send('ping');
        const reader = stream.readable.getReader();
        const { value } = await withTimeout(reader.read(), 10_000, 'echo');
        reader.releaseLock();
        stream.close();
        link.close();
        const ok = value === 'ping';
        tally(phase, 'dial + echo', ok, ok ? 'ok' : 'wrong echo');
        if (ok) phase.dialMs.push(ms);
      } catch (err) {
        tally(phase, 'dial + echo', false, short(err));
        from.node.link(to.identity.id)?.close();
      }
      await sleep(500);
    }
  });
  const registers = nodes.map(async (n) => {
    while (Date.now() < deadline) {
      const r = await httpRequest(gatewayUrl, {
        method: 'POST',
        path: '/v1/register',
        headers: {
          authorization: await createAuthorization(n.identity.key, gatewayUrl),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ record: n.record, push: null }),
        localAddress: n.address,
      });
      const ok = !('error' in r) && r.status === 200;
      tally(phase, 'register', ok, 'error' in r ? r.error : `${r.status} ${r.text.slice(0, 60)}`);
      await sleep(4000);
    }
  });
  const connects = (async () => {
    for (let i = 0; Date.now() < deadline; i++) {
      const address = HONEST_ADDRESSES[i % HONEST_ADDRESSES.length] as string;
      try {
        const fresh = await honestNode(gatewayUrl, address);
        fresh.node.stop();
        tally(phase, 'connect (new node)', true);
      } catch (err) {
        tally(phase, 'connect (new node)', false, short(err));
      }
      await sleep(2000);
    }
  })();
  const turn = (async () => {
    for (let i = 0; Date.now() < deadline; i++) {
      const n = nodes[i % nodes.length] as Honest;
      const client = await TestTurnClient.open(
        { host: '127.0.0.1', port: turnPort },
        TestTurnClient.credentials(turnSecret, n.identity.id),
        n.address,
      );
      try {
        // The test client sends each request once and waits 2 s; a real ICE agent retransmits
        // (RFC 8489 §6.2.1), so a request that got no answer is tried twice more.
        let r: Awaited<ReturnType<typeof client.request>> | undefined;
        for (let attempt = 0; attempt < 3 && !r; attempt++) {
          r = await client
            .request(Method.ALLOCATE, (x) => x.add(RequestedTransport, 17))
            .catch((err: Error) => {
              if (attempt === 2) throw err;
              phase.turnRetries++;
              return undefined;
            });
        }
        if (!r) throw new Error('no response');
        tally(phase, 'TURN allocate', codeOf(r) === 0, `error ${codeOf(r)}`);
        if (codeOf(r) === 0) await client.request(Method.REFRESH, (x) => x.add(Lifetime, 0));
      } catch (err) {
        tally(phase, 'TURN allocate', false, short(err));
      } finally {
        client.close();
      }
      await sleep(1500);
    }
  })();
  await Promise.all([...dials, ...registers, connects, turn]);
  clearInterval(rssTimer);
  const metrics = await httpRequest(gatewayUrl, { path: '/metrics' });
  const value = (name: string) =>
    'error' in metrics
      ? Number.NaN
      : Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics.text)?.[1]);
  phase.turnAllocations = value('rtcmesh_turn_allocations');
  phase.pendingDials = value('rtcmesh_dials_pending');
  phase.turnRequests = value('rtcmesh_turn_requests_total');
  return phase;
}

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ??
    Number.NaN
  );
}

async function main(): Promise<void> {
  // A push service that fails every push with a text meant for the gateway's log and callers.
  const pushService = createServer((req, res) => {
    req.resume();
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`INJECTED \u001b[31mrtcmesh: gateway compromised\u001b[0m\n${'A'.repeat(100_000)}`);
  });
  await new Promise<void>((resolve) => pushService.listen(0, '127.0.0.9', () => resolve()));
  const pushUrl = `http://127.0.0.9:${(pushService.address() as AddressInfo).port}`;

  const gateway = await startGateway({ args: ['--push-allow-private'] });
  const pid = gateway.process.pid ?? 0;
  const turnPort = gateway.turnPort ?? 0;
  const turnSecret = readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim();
  console.log(
    `bench:abuse — gateway pid ${pid} at ${gateway.url}; baseline ${BASELINE_S} s, attack ${ATTACK_S} s${QUICK ? ' (--quick)' : ''}; ${cpus().length} cores`,
  );
  const nodes: Honest[] = [];
  for (const address of [
    HONEST_ADDRESSES[0],
    HONEST_ADDRESSES[0],
    HONEST_ADDRESSES[1],
    HONEST_ADDRESSES[2],
  ])
    nodes.push(await honestNode(gateway.url, address as string));
  const victim = nodes[1] as Honest;

  const baseline = await honestPhase(
    'baseline',
    BASELINE_S,
    gateway.url,
    pid,
    turnPort,
    turnSecret,
    nodes,
  );

  const attacker = fork(fileURLToPath(new URL('./attacker.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const attackReport = new Promise<AttackReport>((resolve) => {
    attacker.once('message', (m) => resolve(m as AttackReport));
    attacker.once('exit', () =>
      resolve({ attacks: {}, notes: ['the attacker process exited without a report'] }),
    );
  });
  const config: AttackConfig = {
    gatewayUrl: gateway.url,
    udpPort: gateway.udpPort,
    turnPort,
    victimId: victim.identity.id,
    honestAddress: HONEST_ADDRESSES[0] as string,
    pushUrl,
    seconds: ATTACK_S,
    scale: SCALE,
  };
  attacker.send({ config });
  // Honest work starts a moment after the attackers, so the attack is on when it is measured.
  await sleep(1000);
  const attacked = await honestPhase(
    'under attack',
    ATTACK_S,
    gateway.url,
    pid,
    turnPort,
    turnSecret,
    nodes,
  );
  const attacks = await withTimeout(attackReport, 60_000, 'attacker report').catch(
    (err: Error): AttackReport => ({ attacks: {}, notes: [err.message] }),
  );
  if (attacker.exitCode === null && attacker.pid) attacker.kill('SIGTERM');

  // What the gateway shows afterwards.
  const alive = isAlive(pid) && gateway.process.exitCode === null;
  const health = await httpRequest(gateway.url, { path: '/healthz' });
  const metrics = await httpRequest(gateway.url, { path: '/metrics' });
  const metricsText = 'error' in metrics ? '' : metrics.text;
  const routeSeries = metricsText
    .split('\n')
    .filter((l) => l.startsWith('rtcmesh_http_requests_total{')).length;
  const page = await httpRequest(gateway.url, { path: '/' });
  const frameHeaders =
    'error' in page
      ? page.error
      : `x-frame-options: ${page.headers['x-frame-options'] ?? '(none)'}; content-security-policy: ${page.headers['content-security-policy'] ?? '(none)'}`;
  const after = await honestPhase(
    'afterwards',
    Math.min(5, BASELINE_S),
    gateway.url,
    pid,
    turnPort,
    turnSecret,
    nodes,
  );
  const peak = peakRssBytes(pid);
  const logLines = gateway.output().split('\n').length;
  const logKinds = new Map<string, number>();
  for (const line of gateway.output().split('\n')) {
    let kind: string | undefined;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      kind = `level ${entry.level} ${entry.msg ?? ''}`.slice(0, 70);
    } catch {
      if (line.startsWith('rtcmesh')) kind = line.slice(0, 70);
    }
    if (kind) logKinds.set(kind, (logKinds.get(kind) ?? 0) + 1);
  }
  const injected = gateway.output().includes('INJECTED') || gateway.output().includes('\u001b[31m');

  for (const n of nodes) n.node.stop();
  await gateway.stop();
  pushService.close();

  // Report.
  const phases = [baseline, attacked, after];
  const ops = [...new Set(phases.flatMap((p) => Object.keys(p.ops)))];
  const rate = (p: Phase, op: string) => {
    const o = p.ops[op];
    if (!o || o.ok + o.failed === 0) return '–';
    return `${((100 * o.ok) / (o.ok + o.failed)).toFixed(1)}% (${o.ok}/${o.ok + o.failed})`;
  };
  const fmt = (ms: number) => (Number.isNaN(ms) ? '–' : `${ms.toFixed(0)} ms`);
  const rows = [
    '| honest | baseline | under attack | afterwards |',
    '|---|---|---|---|',
    ...ops.map((op) => `| ${op} | ${phases.map((p) => rate(p, op)).join(' | ')} |`),
    ...(['p50', 'p95'] as const).map((q) => {
      const p = q === 'p50' ? 50 : 95;
      return `| dial ${q} | ${phases
        .map((ph) =>
          fmt(
            pct(
              [...ph.dialMs].sort((x, y) => x - y),
              p,
            ),
          ),
        )
        .join(' | ')} |`;
    }),
    `| gateway peak RSS | ${phases.map((p) => `${(p.peakRss / MiB).toFixed(0)} MiB`).join(' | ')} |`,
    `| TURN allocations at the end | ${phases.map((p) => p.turnAllocations).join(' | ')} |`,
    `| dials pending at the end | ${phases.map((p) => p.pendingDials).join(' | ')} |`,
    `| TURN requests handled (total at the end) | ${phases.map((p) => p.turnRequests).join(' | ')} |`,
    `| honest TURN requests sent again (no answer in 2 s) | ${phases.map((p) => p.turnRetries).join(' | ')} |`,
  ];
  console.log(`\n${rows.join('\n')}\n`);
  console.log(
    `gateway: peak RSS (VmHWM) ${(peak / MiB).toFixed(0)} MiB; alive afterwards: ${alive}; /healthz: ${'error' in health ? health.error : health.status}`,
  );
  console.log(
    `/metrics: ${metricsText.length} bytes, ${routeSeries} rtcmesh_http_requests_total series; ${logLines} lines of gateway log`,
  );
  for (const [kind, n] of [...logKinds].sort((x, y) => y[1] - x[1]).slice(0, 5))
    console.log(`  gateway log: ${n}× ${kind}`);
  console.log(`GET /: ${frameHeaders}`);
  console.log(`push service's text in the gateway's log: ${injected ? 'yes' : 'no'}`);
  console.log('\n| attack | sent | outcomes |\n|---|---|---|');
  for (const [name, a] of Object.entries(attacks.attacks)) {
    const outcomes = Object.entries(a.outcomes)
      .sort((x, y) => y[1] - x[1])
      .slice(0, 6)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    console.log(`| ${name} | ${a.sent} | ${outcomes} |`);
  }
  for (const note of attacks.notes) console.log(`note: ${note}`);
  const failures = phases.flatMap((p) =>
    Object.entries(p.ops)
      .filter(([, o]) => o.failed > 0)
      .map(
        ([op, o]) =>
          `${p.name} / ${op}: ${o.failed} failed (${Object.entries(o.why)
            .map(([k, v]) => `${v}× ${k}`)
            .join('; ')})`,
      ),
  );
  if (failures.length || !alive) {
    console.log('\n!!! HONEST SUCCESS BELOW 100% (target 100%):');
    if (!alive) console.log('!!! the gateway process is gone');
    for (const f of failures) console.log(`!!! ${f}`);
  } else console.log('\nhonest success: 100% in every phase');
}

await main();
process.exit(0);
