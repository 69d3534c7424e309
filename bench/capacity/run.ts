/**
 * `npm run bench:capacity` (issue #8): drives one real `rtcmesh gateway` process with many
 * lightweight synthetic nodes and prints what it sustains: registrations per second (signed
 * POST /v1/register), concurrent WebRTC associations (POST /v1/connect + `ctl`, from forked
 * node-datachannel worker processes), dials per second through the `ctl` signaling path with
 * p50/p95 dial→answer latency, and the gateway's resident memory per registered node and
 * per association. Figures go to the README between `<!-- bench:capacity -->` markers.
 *
 *   CAPACITY_QUICK=1 (or --quick)   a small run (nothing recorded)
 *   CAPACITY_NODES=10000            registrations
 *   CAPACITY_ASSOCIATIONS=1000      WebRTC associations
 *   CAPACITY_WORKERS=4              load-generator processes holding the associations
 *   CAPACITY_DIAL_RATE=300          offered dials per second in the open-loop phase
 *   CAPACITY_DIAL_SECONDS=15        length of each dial phase
 *   CAPACITY_RECORD=0               do not write the README
 *   CAPACITY_GATEWAY_SCRIPT=FILE    start the gateway with this entry point (a profiling wrapper)
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { startGateway } from '../../e2e/support/gateway-process.ts';
import { repoPath } from '../../e2e/support/paths.ts';
import type { NodeIdentity } from '../../src/core/identity/index.ts';
import {
  authorization,
  errorText,
  keepAliveAgent,
  percentile,
  pool,
  postJson,
  syntheticIdentity,
  syntheticRecord,
} from './synthetic.ts';
import type { WorkerCommand, WorkerReply } from './worker.ts';

const QUICK = process.argv.includes('--quick') || process.env.CAPACITY_QUICK === '1';
const env = (name: string, full: number, quick: number) =>
  Number(process.env[name] ?? (QUICK ? quick : full));
const NODES = env('CAPACITY_NODES', 10_000, 200);
const ASSOCIATIONS = env('CAPACITY_ASSOCIATIONS', 1000, 40);
const WORKERS = env('CAPACITY_WORKERS', 4, 2);
const DIAL_RATE = env('CAPACITY_DIAL_RATE', 300, 50);
const DIAL_SECONDS = env('CAPACITY_DIAL_SECONDS', 15, 3);
const RECORD = process.env.CAPACITY_RECORD !== '0' && !QUICK;
const REGISTER_CONCURRENCY = 64;
const CONNECT_CONCURRENCY = 8;

const TARGETS = { nodes: 10_000, associations: 1000, dialsPerS: 300 };

/**
 * All synthetic traffic comes from 127.0.0.1, so the per-address limits are raised; so are
 * the per-node dial and ctl message rates for the closed-loop (saturating) dial phase.
 * Everything else keeps its default.
 */
const LIMITS = [
  'newNodesPerIp.perSecond=1000000',
  'newNodesPerIp.burst=1000000',
  'maxConnectingPerIp=100000',
  'maxConnectionsPerIp=100000',
  'maxPendingDialsPerIp=100000',
  'maxPendingDialsPerIpAndCallee=100000',
  'maxPendingDialsPerPair=100000',
  'maxPendingDialsPerCallee=100000',
  'dialPerId.perSecond=1000',
  'dialPerId.burst=1000',
  'messagesPerSession.perSecond=1000',
  'messagesPerSession.burst=1000',
];

const CLK_TCK = 100;
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}
function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return Number(m?.[1] ?? 0) * 1024;
}
/** UDP datagrams dropped for a full receive buffer, in this network namespace (all of ours). */
function udpRcvbufErrors(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('RcvbufErrors')] ?? 0);
}
/** Datagrams dropped so far by the UDP socket bound to `port` (the gateway's ICE mux). */
function udpSocketDrops(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(hex)) drops += Number(f[f.length - 1] ?? 0);
  }
  return drops;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (v: number) => `${v.toFixed(1)} ms`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

/** CPU used by the gateway and by the load generator (this process and its workers). */
class CpuMeter {
  private readonly start: { gateway: number; generator: number; at: number };
  constructor(
    private readonly gatewayPid: number,
    private readonly workerPids: () => number[],
  ) {
    this.start = this.sample();
  }
  private sample() {
    const generator =
      cpuSeconds(process.pid) + this.workerPids().reduce((a, pid) => a + cpuSeconds(pid), 0);
    return { gateway: cpuSeconds(this.gatewayPid), generator, at: performance.now() };
  }
  /** Cores used on average since construction (1.0 = one core busy). */
  read(): { gateway: number; generator: number } {
    const now = this.sample();
    const s = (now.at - this.start.at) / 1000;
    return {
      gateway: (now.gateway - this.start.gateway) / s,
      generator: (now.generator - this.start.generator) / s,
    };
  }
}

class Worker {
  private waiting: ((r: WorkerReply) => void) | undefined;
  constructor(readonly child: ChildProcess) {
    child.on('message', (r: WorkerReply) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(r);
    });
  }
  ask<T extends WorkerReply['type']>(
    cmd: WorkerCommand,
    type: T,
  ): Promise<Extract<WorkerReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.waiting = (r) => {
        if (r.type === type) resolve(r as Extract<WorkerReply, { type: T }>);
        else reject(new Error(`worker: ${r.type === 'error' ? r.message : r.type}`));
      };
      this.child.send(cmd);
    });
  }
}

function record(section: string, text: string): void {
  const readme = repoPath('README.md');
  const before = readFileSync(readme, 'utf8');
  const begin = `<!-- bench:${section} -->`;
  const end = `<!-- /bench:${section} -->`;
  if (!before.includes(begin) || !before.includes(end)) {
    console.log(`README.md has no ${begin} … ${end} markers: not recorded`);
    return;
  }
  writeFileSync(
    readme,
    before.replace(new RegExp(`${begin}[\\s\\S]*${end}`), () => `${begin}\n${text}\n${end}`),
  );
  console.log(`recorded in README.md (${section})`);
}

function merge(target: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) target[k] = (target[k] ?? 0) + v;
}
const errorList = (errors: Record<string, number>) =>
  Object.entries(errors)
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ') || 'none';

async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
}

const load0 = loadavg()[0] ?? 0;
console.log(
  `capacity: ${int(NODES)} registrations, ${int(ASSOCIATIONS)} WebRTC associations from ${WORKERS} worker processes, dials at ${DIAL_RATE}/s then saturating, ${DIAL_SECONDS} s each; ${cpus().length} cores shared by the gateway and the load generator; load average ${load0.toFixed(2)} at start${QUICK ? ' (quick run)' : ''}`,
);
console.log(`gateway limits raised for one-address load: ${LIMITS.join(' ')}`);

const SCRIPT = process.env.CAPACITY_GATEWAY_SCRIPT;
const gateway = await startGateway({
  args: LIMITS.flatMap((l) => ['--limit', l]),
  ...(SCRIPT ? { script: SCRIPT } : {}),
});
const gatewayPid = gateway.process.pid as number;
const workers: Worker[] = [];
try {
  await sleep(1000);
  const rssBase = rssBytes(gatewayPid);
  console.log(
    `gateway ${gateway.id} on ${gateway.url}, udp ${gateway.udpPort}; RSS ${mib(rssBase)}`,
  );

  // ---- registrations -------------------------------------------------------------------
  const prepStart = performance.now();
  const prepared: { identity: NodeIdentity; record: string; auth: string }[] = [];
  await pool(NODES, 16, async () => {
    const identity = await syntheticIdentity();
    prepared.push({
      identity,
      record: await syntheticRecord(identity),
      auth: await authorization(identity, gateway.url),
    });
  });
  console.log(
    `prepared ${int(NODES)} identities, records and request tokens in ${((performance.now() - prepStart) / 1000).toFixed(1)} s (before the timed phase)`,
  );
  const agent = keepAliveAgent(REGISTER_CONCURRENCY);
  const regLatencies: number[] = [];
  const regErrors: Record<string, number> = {};
  let registered = 0;
  const regCpu = new CpuMeter(gatewayPid, () => []);
  const regStart = performance.now();
  await pool(prepared.length, REGISTER_CONCURRENCY, async (i) => {
    const p = prepared[i];
    if (!p) return;
    const t0 = performance.now();
    try {
      const res = await postJson(
        agent,
        `${gateway.url}/v1/register`,
        { authorization: p.auth },
        { record: p.record, push: null },
      );
      regLatencies.push(performance.now() - t0);
      if (res.status === 200) registered++;
      else merge(regErrors, { [errorText(res.status, res.body)]: 1 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') {
        // A kept-alive connection closing under the request (see signedPost): once more,
        // with a fresh token (tokens are single-use). Rare, and outside the latency figures.
        const again = await postJson(
          agent,
          `${gateway.url}/v1/register`,
          { authorization: await authorization(p.identity, gateway.url) },
          { record: p.record, push: null },
        ).catch((e: Error) => ({ status: 0, body: e.message }));
        if (again.status === 200) registered++;
        else merge(regErrors, { [errorText(again.status, again.body)]: 1 });
        return;
      }
      merge(regErrors, { [(err as Error).message]: 1 });
    }
  });
  const regSeconds = (performance.now() - regStart) / 1000;
  const regCores = regCpu.read();
  agent.destroy();
  const regSorted = sorted(regLatencies);
  const regs = {
    ok: registered,
    perS: registered / regSeconds,
    p50: percentile(regSorted, 50),
    p95: percentile(regSorted, 95),
    cores: regCores,
  };
  console.log(
    `registrations: ${int(registered)}/${int(NODES)} in ${regSeconds.toFixed(1)} s = ${int(regs.perS)}/s, latency p50 ${ms(regs.p50)} p95 ${ms(regs.p95)} at ${REGISTER_CONCURRENCY} in flight; CPU gateway ${regCores.gateway.toFixed(2)} cores, generator ${regCores.generator.toFixed(2)}; errors: ${errorList(regErrors)}`,
  );
  await sleep(2000);
  const rssRegs = rssBytes(gatewayPid);
  const perNode = (rssRegs - rssBase) / Math.max(1, registered);
  console.log(`gateway RSS ${mib(rssRegs)}: +${kib(perNode)} per registered node`);

  // ---- associations --------------------------------------------------------------------
  const workerScript = fileURLToPath(new URL('./worker.mjs', import.meta.url));
  for (let w = 0; w < WORKERS; w++)
    workers.push(
      new Worker(fork(workerScript, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })),
    );
  const workerPids = () => workers.map((w) => w.child.pid as number);
  const connCpu = new CpuMeter(gatewayPid, workerPids);
  const connDrops0 = udpRcvbufErrors();
  const connStart = performance.now();
  const shares = workers.map(
    (_, w) => Math.floor(ASSOCIATIONS / WORKERS) + (w < ASSOCIATIONS % WORKERS ? 1 : 0),
  );
  const connected = await Promise.all(
    workers.map((w, i) =>
      w.ask(
        {
          cmd: 'connect',
          gatewayUrl: gateway.url,
          count: shares[i] ?? 0,
          concurrency: CONNECT_CONCURRENCY,
        },
        'connected',
      ),
    ),
  );
  const connSeconds = (performance.now() - connStart) / 1000;
  const connCores = connCpu.read();
  const connDrops = udpRcvbufErrors() - connDrops0;
  const connErrors: Record<string, number> = {};
  for (const c of connected) merge(connErrors, c.errors);
  const connOk = connected.reduce((a, c) => a + c.ok, 0);
  const connSorted = sorted(connected.flatMap((c) => c.latencies));
  const conns = {
    ok: connOk,
    perS: connOk / connSeconds,
    p50: percentile(connSorted, 50),
    p95: percentile(connSorted, 95),
    cores: connCores,
  };
  console.log(
    `associations: ${int(connOk)}/${int(ASSOCIATIONS)} open in ${connSeconds.toFixed(1)} s = ${conns.perS.toFixed(0)}/s, POST /v1/connect → ctl open p50 ${ms(conns.p50)} p95 ${ms(conns.p95)} at ${WORKERS}×${CONNECT_CONCURRENCY} in flight; CPU gateway ${connCores.gateway.toFixed(2)} cores, generator ${connCores.generator.toFixed(2)}; UDP datagrams dropped (receive buffer full) ${int(connDrops)}; errors: ${errorList(connErrors)}`,
  );
  await sleep(1000);
  // What the associations cost when nothing happens but the nodes' pings.
  const idleCpu = new CpuMeter(gatewayPid, workerPids);
  await sleep(5000);
  const idleCores = idleCpu.read();
  const sessions = (await metric(gateway.url, 'rtcmesh_sessions')) ?? Number.NaN;
  const rssAssoc = rssBytes(gatewayPid);
  const perAssoc = (rssAssoc - rssRegs) / Math.max(1, connOk);
  console.log(
    `gateway reports ${int(sessions)} open sessions; RSS ${mib(rssAssoc)}: +${kib(perAssoc)} per association; idle (pings only) CPU gateway ${idleCores.gateway.toFixed(2)} cores, generator ${idleCores.generator.toFixed(2)}`,
  );

  // ---- dials ---------------------------------------------------------------------------
  const dialPhase = async (cmd: Omit<Extract<WorkerCommand, { cmd: 'dials' }>, 'cmd'>) => {
    const cpu = new CpuMeter(gatewayPid, workerPids);
    const drops0 = udpRcvbufErrors();
    const gwDrops0 = udpSocketDrops(gateway.udpPort);
    const replies = await Promise.all(workers.map((w) => w.ask({ cmd: 'dials', ...cmd }, 'dials')));
    const cores = cpu.read();
    const errors: Record<string, number> = {};
    for (const r of replies) merge(errors, r.errors);
    const answered = replies.reduce((a, r) => a + r.answered, 0);
    const sent = replies.reduce((a, r) => a + r.sent, 0);
    const elapsed = Math.max(...replies.map((r) => r.elapsedMs)) / 1000;
    const lat = sorted(replies.flatMap((r) => r.latencies));
    return {
      sent,
      answered,
      perS: answered / elapsed,
      p50: percentile(lat, 50),
      p95: percentile(lat, 95),
      p99: percentile(lat, 99),
      errors,
      cores,
      sessionsOpen: replies.reduce((a, r) => a + r.sessionsOpen, 0),
      udpDrops: udpRcvbufErrors() - drops0,
      gatewayDrops: udpSocketDrops(gateway.udpPort) - gwDrops0,
    };
  };
  const callers = Math.floor(connOk / 2);
  const offered = await dialPhase({ rate: DIAL_RATE / WORKERS, durationMs: DIAL_SECONDS * 1000 });
  console.log(
    `dials offered at ${DIAL_RATE}/s (${int(callers)} callers → as many callees, over ctl): ${int(offered.answered)}/${int(offered.sent)} answered = ${offered.perS.toFixed(0)}/s, dial → answer p50 ${ms(offered.p50)} p95 ${ms(offered.p95)} p99 ${ms(offered.p99)}; CPU gateway ${offered.cores.gateway.toFixed(2)} cores, generator ${offered.cores.generator.toFixed(2)}; UDP datagrams dropped (receive buffer full) ${int(offered.udpDrops)}, ${int(offered.gatewayDrops)} of them at the gateway's socket; errors: ${errorList(offered.errors)}`,
  );
  await sleep(1000);
  const saturated = await dialPhase({ outstanding: 1, durationMs: DIAL_SECONDS * 1000 });
  console.log(
    `dials saturating (every caller keeps one dial outstanding, ${int(callers)} in flight): ${int(saturated.answered)} answered = ${saturated.perS.toFixed(0)}/s, dial → answer p50 ${ms(saturated.p50)} p95 ${ms(saturated.p95)} p99 ${ms(saturated.p99)}; CPU gateway ${saturated.cores.gateway.toFixed(2)} cores, generator ${saturated.cores.generator.toFixed(2)}; UDP datagrams dropped (receive buffer full) ${int(saturated.udpDrops)}, ${int(saturated.gatewayDrops)} of them at the gateway's socket; errors: ${errorList(saturated.errors)}`,
  );
  const sessionsAfter = (await metric(gateway.url, 'rtcmesh_sessions')) ?? Number.NaN;
  const rssEnd = rssBytes(gatewayPid);
  console.log(`after the dials: ${int(sessionsAfter)} open sessions, gateway RSS ${mib(rssEnd)}`);
  const load1 = loadavg()[0] ?? 0;

  // ---- report --------------------------------------------------------------------------
  const perDial = (phase: { cores: { gateway: number }; perS: number }) =>
    ms((1000 * Math.max(0, phase.cores.gateway - idleCores.gateway)) / phase.perS);
  const pass = (ok: boolean) => (ok ? 'pass' : '**miss**');
  const date = new Date().toISOString().slice(0, 10);
  const table = [
    `Capacity (\`npm run bench:capacity\`, one gateway process, SQLite registry, ${cpus().length} cores shared with the load generator, ${date}):`,
    '',
    '| figure | measured | target |',
    '|---|---|---|',
    `| registered nodes (signed POST /v1/register) | ${int(registered)} at ${int(regs.perS)}/s, p50 ${ms(regs.p50)} p95 ${ms(regs.p95)} | ${int(TARGETS.nodes)}: ${pass(registered >= TARGETS.nodes)} |`,
    `| concurrent WebRTC associations (POST /v1/connect + ctl) | ${int(sessionsAfter)} open (${int(connOk)} made at ${conns.perS.toFixed(0)}/s, connect → ctl open p50 ${ms(conns.p50)} p95 ${ms(conns.p95)}) | ${int(TARGETS.associations)}: ${pass(sessionsAfter >= TARGETS.associations)} |`,
    `| dials over ctl, offered ${DIAL_RATE}/s | ${offered.perS.toFixed(0)}/s answered, dial → answer p50 ${ms(offered.p50)} p95 ${ms(offered.p95)} | ≥ ${TARGETS.dialsPerS}/s: ${pass(offered.perS >= TARGETS.dialsPerS * 0.98 && offered.answered === offered.sent)} |`,
    `| UDP datagrams dropped for a full receive buffer during the dials (all sockets / the gateway's) | ${int(offered.udpDrops + saturated.udpDrops)} / ${int(offered.gatewayDrops + saturated.gatewayDrops)} | — |`,
    `| dials over ctl, saturating (${int(callers)} in flight) | ${saturated.perS.toFixed(0)}/s, p50 ${ms(saturated.p50)} p95 ${ms(saturated.p95)} | — |`,
    `| gateway memory per registered node | ${kib(perNode)} (RSS ${mib(rssBase)} → ${mib(rssRegs)}) | — |`,
    `| gateway memory per association | ${kib(perAssoc)} (RSS → ${mib(rssAssoc)}) | — |`,
    '',
    `Gateway CPU (1.00 = one core): ${regs.cores.gateway.toFixed(2)} registering, ${conns.cores.gateway.toFixed(2)} connecting, ${idleCores.gateway.toFixed(2)} holding ${int(connOk)} idle associations, ${offered.cores.gateway.toFixed(2)} at ${DIAL_RATE} dials/s, ${saturated.cores.gateway.toFixed(2)} saturating; that is ${perDial(offered)} and ${perDial(saturated)} of gateway CPU per dial above the idle figure; the load generator (${WORKERS} worker processes) used ${offered.cores.generator.toFixed(2)} and ${saturated.cores.generator.toFixed(2)} in the dial phases, on the same ${cpus().length} cores. Load average ${load0.toFixed(2)} → ${load1.toFixed(2)}. All traffic comes from 127.0.0.1, so the per-address limits (and per-node dial and ctl rates, for the saturating phase) were raised: \`${LIMITS.map((l) => `--limit ${l}`).join(' ')}\`.`,
  ].join('\n');
  console.log(`\n${table}\n`);
  if (RECORD) record('capacity', table);
} finally {
  await Promise.all(
    workers.map(async (w) => {
      await Promise.race([w.ask({ cmd: 'close' }, 'closed').catch(() => {}), sleep(5000)]);
      if (w.child.exitCode === null) w.child.kill('SIGTERM');
    }),
  );
  const code = await gateway.stop();
  if (code !== 0 && code !== null) console.log(`gateway exited with ${code}`);
}
process.exit(0);
