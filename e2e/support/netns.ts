/**
 * Test networks made of network namespaces (TESTING.md): a "public" network with the
 * gateway, and sites whose hosts sit behind a Linux router doing NAT with nftables:
 * `masquerade` gives an endpoint-independent mapping (hole punching works),
 * `masquerade fully-random` a symmetric one (only a relay works). Documentation and 10.x
 * ranges only; every namespace is deleted afterwards.
 */
import { execFileSync } from 'node:child_process';

export type SiteKind = 'public' | 'cone-nat' | 'symmetric-nat';

export interface TestNetwork {
  gatewayNs: string;
  gatewayIp: string;
  /** The namespace each host (browser) runs in. */
  hosts: string[];
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });

/** Builds the public network and one site per entry of `sites`. */
export function buildNetwork(tag: string, sites: SiteKind[]): TestNetwork {
  const made: string[] = [];
  const ns = (name: string) => {
    const full = `rm${tag}${name}`;
    ip('netns', 'add', full);
    made.push(full);
    // These networks are IPv4. With IPv6 on, each link's address finishes duplicate address
    // detection about a second after the link is up, and Chromium, seeing an address change,
    // fails a page load in flight with ERR_NETWORK_CHANGED (seen once in udp-blocked.spec).
    inNs(full, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1');
    inNs(full, 'ip', 'link', 'set', 'lo', 'up');
    return full;
  };
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
    const pub = ns('pub');
    const gatewayIp = '203.0.113.1';
    inNs(pub, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    inNs(pub, 'ip', 'addr', 'add', `${gatewayIp}/24`, 'dev', 'br0');
    inNs(pub, 'ip', 'link', 'set', 'br0', 'up');
    /** A veth pair with one end in `a` (named ea) and the other in `b` (named eb). */
    const link = (a: string, ea: string, b: string, eb: string) => {
      ip('link', 'add', `t${tag}${ea}`, 'type', 'veth', 'peer', 'name', `t${tag}${eb}`);
      ip('link', 'set', `t${tag}${ea}`, 'netns', a, 'name', ea);
      ip('link', 'set', `t${tag}${eb}`, 'netns', b, 'name', eb);
      inNs(a, 'ip', 'link', 'set', ea, 'up');
      inNs(b, 'ip', 'link', 'set', eb, 'up');
    };
    const hosts = sites.map((kind, i) => {
      const n = i + 1;
      const wanIp = `203.0.113.${10 + n}`;
      if (kind === 'public') {
        const host = ns(`h${n}`);
        link(pub, `p${n}`, host, 'eth0');
        inNs(pub, 'ip', 'link', 'set', `p${n}`, 'master', 'br0');
        inNs(host, 'ip', 'addr', 'add', `${wanIp}/24`, 'dev', 'eth0');
        return host;
      }
      const router = ns(`r${n}`);
      const host = ns(`h${n}`);
      link(pub, `p${n}`, router, 'wan');
      inNs(pub, 'ip', 'link', 'set', `p${n}`, 'master', 'br0');
      inNs(router, 'ip', 'addr', 'add', `${wanIp}/24`, 'dev', 'wan');
      link(router, 'lan', host, 'eth0');
      inNs(router, 'ip', 'addr', 'add', `10.${n}.0.1/24`, 'dev', 'lan');
      inNs(host, 'ip', 'addr', 'add', `10.${n}.0.2/24`, 'dev', 'eth0');
      inNs(host, 'ip', 'route', 'add', 'default', 'via', `10.${n}.0.1`);
      inNs(router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
      const masquerade = kind === 'symmetric-nat' ? 'masquerade fully-random' : 'masquerade';
      inNs(
        router,
        'nft',
        `add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post oifname "wan" ${masquerade}`,
      );
      // Like a home router, drop unsolicited packets from outside. Dropped here, they leave no
      // conntrack entry behind that would make the NAT pick another port for the host's own
      // later packets to that peer (which would break endpoint-independent mapping).
      inNs(
        router,
        'nft',
        'add table ip filter; add chain ip filter input { type filter hook input priority 0; }; add rule ip filter input iifname "wan" ct state new drop',
      );
      return host;
    });
    return { gatewayNs: pub, gatewayIp, hosts, destroy };
  } catch (err) {
    destroy();
    throw err;
  }
}
