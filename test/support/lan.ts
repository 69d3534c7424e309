/**
 * A test LAN made of network namespaces (TESTING.md): one namespace holds a bridge, and each
 * host is a namespace with one veth on it, an IPv4 and an IPv6 address, and no route to
 * anything else. Multicast flows on the bridge (snooping off, as on a dumb switch).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { type CliOptions, type CliRun, runCli } from '../../e2e/support/cli-process.ts';

export interface TestLan {
  /** Host namespaces, with their IPv4 address on the LAN. */
  hosts: { ns: string; ip: string; ip6: string }[];
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * `tag` starts with the engineer's prefix and keeps names within 15 characters; `ipv4: false`
 * makes an IPv6-only LAN.
 */
export function buildLan(
  tag: string,
  hostCount: number,
  options: { ipv4?: boolean } = {},
): TestLan {
  const made: string[] = [];
  const destroy = () => {
    for (const n of made.reverse()) {
      try {
        ip('netns', 'del', n);
      } catch {
        // already gone
      }
    }
  };
  try {
    const switchNs = `${tag}sw`;
    ip('netns', 'add', switchNs);
    made.push(switchNs);
    inNs(switchNs, 'ip', 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    inNs(switchNs, 'ip', 'link', 'set', 'br0', 'up');
    const hosts = Array.from({ length: hostCount }, (_, i) => {
      const n = i + 1;
      const ns = `${tag}h${n}`;
      ip('netns', 'add', ns);
      made.push(ns);
      inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
      ip('link', 'add', `${tag}p${n}`, 'type', 'veth', 'peer', 'name', `${tag}e${n}`);
      ip('link', 'set', `${tag}p${n}`, 'netns', switchNs);
      ip('link', 'set', `${tag}e${n}`, 'netns', ns, 'name', 'eth0');
      inNs(switchNs, 'ip', 'link', 'set', `${tag}p${n}`, 'master', 'br0');
      inNs(switchNs, 'ip', 'link', 'set', `${tag}p${n}`, 'up');
      const v4 = `10.77.0.${10 + n}`;
      const v6 = `fd77::${10 + n}`;
      if (options.ipv4 !== false) inNs(ns, 'ip', 'addr', 'add', `${v4}/24`, 'dev', 'eth0');
      inNs(ns, 'ip', '-6', 'addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad');
      inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
      return { ns, ip: v4, ip6: v6 };
    });
    return { hosts, destroy };
  } catch (err) {
    destroy();
    throw err;
  }
}

/**
 * `rtcmesh …` on LAN host `host` (numbered from 1), as a user runs it there, with a new data
 * directory of its own under `scratch`.
 */
export function cliOnHost(
  lan: TestLan,
  host: number,
  scratch: string,
  args: string[],
  options: Pick<CliOptions, 'input' | 'env'> = {},
): CliRun {
  return runCli(args, {
    ...options,
    netns: lan.hosts[host - 1]?.ns ?? '',
    data: mkdtempSync(join(scratch, `h${host}-`)),
  });
}
