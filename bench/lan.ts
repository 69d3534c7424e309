/**
 * LAN discovery and election figures (`npm run bench`, section lan): CLI devices in network
 * namespaces on one bridge, as in test/lan-discovery.test.ts.
 *
 * - found: from `rtcmesh node` starting with no --gateway to its session with a gateway that
 *   announces itself, against the same node given --gateway (the baseline, same run);
 * - takeover: from killing the device that serves to the other capable device serving, and to
 *   a plain node's session with it again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN } from '../e2e/support/gateway-process.ts';
import { buildLan, type TestLan } from '../test/support/lan.ts';

export interface LanFigures {
  foundMs: number[];
  configuredMs: number[];
  electedMs: number[];
  reconnectedMs: number[];
}

interface Running {
  child: ChildProcess;
  err: () => string;
  startedAt: number;
}

function start(lan: TestLan, host: number, args: string[], scratch: string): Running {
  const ns = lan.hosts[host - 1]?.ns ?? '';
  const data = mkdtempSync(join(scratch, `h${host}-`));
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, RTCMESH_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RTCMESH_NODE_DATA: data, RTCMESH_DATA: data },
  });
  // The gateway says where it listens on stdout, nodes on stderr: one log of both.
  let stderr = '';
  const collect = (d: Buffer) => {
    stderr += d.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return { child, err: () => stderr, startedAt: Date.now() };
}

async function until(check: () => boolean, what: string, ms = 60_000): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return Date.now();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function stop(r: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return;
  const exited = new Promise((resolve) => r.child.once('exit', resolve));
  r.child.kill(signal);
  await exited;
}

const CONNECTED = /node \S+ \(\S+\) connected to/;
const SERVING = /serving as this LAN's gateway \S+ at (\S+)/;

export async function lanBench(rounds: number): Promise<LanFigures> {
  const scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-bench-lan-'));
  const lan = buildLan(`ldb${process.pid % 100}`, 3);
  const figures: LanFigures = { foundMs: [], configuredMs: [], electedMs: [], reconnectedMs: [] };
  const running: Running[] = [];
  try {
    const h1 = lan.hosts[0]?.ip ?? '';
    const gateway = start(
      lan,
      1,
      ['gateway', '--announce', '--listen', `${h1}:0`, '--udp', `${h1}:0`, '--registry', 'memory'],
      scratch,
    );
    running.push(gateway);
    await until(() => /listening on (\S+),/.test(gateway.err()), 'the gateway');
    const url = /listening on (\S+),/.exec(gateway.err())?.[1] ?? '';
    for (let i = 0; i < rounds; i++) {
      for (const [args, into] of [
        [['node'], figures.foundMs],
        [['node', '--gateway', url], figures.configuredMs],
      ] as const) {
        const node = start(lan, 2, [...args], scratch);
        const at = await until(() => CONNECTED.test(node.err()), 'a node to connect');
        into.push(at - node.startedAt);
        await stop(node);
      }
    }
    await stop(gateway);

    const plain = start(lan, 3, ['node'], scratch);
    running.push(plain);
    let capable = [1, 2].map((h) => start(lan, h, ['node', '--may-serve'], scratch));
    running.push(...capable);
    for (let i = 0; i < rounds; i++) {
      await until(() => capable.some((d) => SERVING.test(d.err())), 'a device to serve');
      await until(() => CONNECTED.test(plain.err()), 'the plain node to connect');
      const index = capable.findIndex((d) => SERVING.test(d.err()));
      const gone = capable[index] as Running;
      const other = capable[1 - index] as Running;
      const reconnects = plain.err().split('connected again').length;
      const killedAt = Date.now();
      await stop(gone, 'SIGKILL');
      const servedAt = await until(() => SERVING.test(other.err()), 'a takeover');
      const url = SERVING.exec(other.err())?.[1] ?? '';
      const back = await until(
        () =>
          plain.err().split('connected again').length > reconnects &&
          plain.err().endsWith(`connected again to ${url}\n`),
        'the plain node to reconnect',
      );
      figures.electedMs.push(servedAt - killedAt);
      figures.reconnectedMs.push(back - killedAt);
      // The killed device comes back (plain while the other serves) for the next round.
      const again = start(lan, index + 1, ['node', '--may-serve'], scratch);
      running.push(again);
      capable = index === 0 ? [again, other] : [other, again];
      await until(() => CONNECTED.test(again.err()), 'the device back');
    }
    return figures;
  } catch (err) {
    for (const r of running)
      console.error(
        `--- ${r.child.spawnargs.slice(3).join(' ')}\n${r.err().split('\n').slice(-12).join('\n')}`,
      );
    throw err;
  } finally {
    for (const r of running) await stop(r, 'SIGKILL');
    lan.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}
