/**
 * Disconnected LANs joined only by gateways (docs/design.md "Relays across hops"), built from
 * network namespaces with no route to anything outside: LAN i is 10.77.i.0/24 (its gateway
 * .1, its host .2); gateways i and j share backbone 10.77.ij.0/24 (gateway k at .k). Hosts
 * have no default route; gateways do not forward IP unless `routedThrough` says so (the
 * middle gateway of a chain whose ends must reach each other's relay, see the design).
 * Every namespace is deleted by destroy().
 */
import { execFileSync } from 'node:child_process';

export interface FederatedGateway {
  ns: string;
  /** Its address on its own LAN (where its nodes reach it). */
  lanIp: string;
  /** Its address on each backbone it is on, by the other gateway's number. */
  backboneIps: Map<number, string>;
  /** The backbone networks it is on (CIDR). */
  backboneNets: string[];
}

export interface FederatedLans {
  gateways: FederatedGateway[];
  /** One host namespace per LAN. */
  hosts: { ns: string; ip: string }[];
  destroy(): void;
}

const run = (cmd: string, ...args: string[]) =>
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, ...cmd: string[]) => run('ip', 'netns', 'exec', ns, ...cmd);

export const backboneNet = (i: number, j: number) =>
  `10.77.${Math.min(i, j)}${Math.max(i, j)}.0/24`;

/**
 * `lans` LANs with one gateway and one host each, and a backbone per pair in `backbones`
 * (gateway numbers from 1). With `routedThrough` [k, i, j], gateway k forwards IP between
 * its backbones with i and j, and those two route each other's backbone through it.
 */
export function buildFederatedLans(
  tag: string,
  lans: number,
  backbones: [number, number][],
  routedThrough?: [number, number, number],
): FederatedLans {
  const made: string[] = [];
  const destroy = () => {
    for (const n of made.reverse()) {
      try {
        run('ip', 'netns', 'del', n);
      } catch {
        // already gone
      }
    }
  };
  const ns = (name: string) => {
    const full = `rm${tag}${name}`;
    run('ip', 'netns', 'add', full);
    made.push(full);
    inNs(full, 'ip', 'link', 'set', 'lo', 'up');
    return full;
  };
  /** A veth pair: `ea` in `a`, `eb` in `b` (temporary names carry the tag: no collisions). */
  const link = (a: string, ea: string, b: string, eb: string) => {
    const ta = `t${tag}${a.slice(-2)}${ea}`.slice(0, 15);
    const tb = `t${tag}${b.slice(-2)}${eb}`.slice(0, 15);
    run('ip', 'link', 'add', ta, 'type', 'veth', 'peer', 'name', tb);
    run('ip', 'link', 'set', ta, 'netns', a, 'name', ea);
    run('ip', 'link', 'set', tb, 'netns', b, 'name', eb);
    inNs(a, 'ip', 'link', 'set', ea, 'up');
    inNs(b, 'ip', 'link', 'set', eb, 'up');
  };
  try {
    const gateways: FederatedGateway[] = [];
    const hosts: { ns: string; ip: string }[] = [];
    for (let i = 1; i <= lans; i++) {
      const g = ns(`g${i}`);
      const h = ns(`h${i}`);
      link(g, 'lan', h, 'eth0');
      inNs(g, 'ip', 'addr', 'add', `10.77.${i}.1/24`, 'dev', 'lan');
      inNs(h, 'ip', 'addr', 'add', `10.77.${i}.2/24`, 'dev', 'eth0');
      gateways.push({ ns: g, lanIp: `10.77.${i}.1`, backboneIps: new Map(), backboneNets: [] });
      hosts.push({ ns: h, ip: `10.77.${i}.2` });
    }
    for (const [i, j] of backbones) {
      const gi = gateways[i - 1] as FederatedGateway;
      const gj = gateways[j - 1] as FederatedGateway;
      link(gi.ns, `bb${j}`, gj.ns, `bb${i}`);
      const net = backboneNet(i, j);
      const prefix = net.replace(/\.0\/24$/, '');
      inNs(gi.ns, 'ip', 'addr', 'add', `${prefix}.${i}/24`, 'dev', `bb${j}`);
      inNs(gj.ns, 'ip', 'addr', 'add', `${prefix}.${j}/24`, 'dev', `bb${i}`);
      gi.backboneIps.set(j, `${prefix}.${i}`);
      gj.backboneIps.set(i, `${prefix}.${j}`);
      gi.backboneNets.push(net);
      gj.backboneNets.push(net);
    }
    if (routedThrough) {
      const [k, i, j] = routedThrough;
      const gk = gateways[k - 1] as FederatedGateway;
      inNs(gk.ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
      const gi = gateways[i - 1] as FederatedGateway;
      const gj = gateways[j - 1] as FederatedGateway;
      inNs(gi.ns, 'ip', 'route', 'add', backboneNet(k, j), 'via', gk.backboneIps.get(i) as string);
      inNs(gj.ns, 'ip', 'route', 'add', backboneNet(k, i), 'via', gk.backboneIps.get(j) as string);
    }
    return { gateways, hosts, destroy };
  } catch (err) {
    destroy();
    throw err;
  }
}
