// Runs a command inside a network namespace whose only interface is loopback, so that the
// browsers and servers a test starts can reach nothing but each other (TESTING.md: Chromium
// gathers candidates on every interface and calls home as it starts, whatever its flags).
//
//   node scripts/isolated.mjs <command> [args…]
//
// Already isolated: runs the command as it is. Root with unshare(1): isolates it. Otherwise
// (a laptop without root) runs it on the host network and says so.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const command = process.argv.slice(2);
if (command.length === 0) {
  console.error('usage: node scripts/isolated.mjs <command> [args…]');
  process.exit(2);
}

// /proc/net/dev lists the interfaces of this process's own namespace (/sys/class/net may not).
const interfaces = readFileSync('/proc/net/dev', 'utf8')
  .split('\n')
  .slice(2)
  .map((line) => line.split(':')[0]?.trim())
  .filter(Boolean);
const isolated = interfaces.every((name) => name === 'lo');
const canUnshare =
  process.getuid?.() === 0 &&
  spawnSync('unshare', ['-n', 'true']).status === 0 &&
  spawnSync('ip', ['-V']).status === 0;

let child;
if (isolated) {
  child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
} else if (canUnshare) {
  console.log('[isolated] running in a loopback-only network namespace');
  child = spawn(
    'unshare',
    ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', ...command],
    {
      stdio: 'inherit',
    },
  );
} else {
  console.warn(
    '[isolated] cannot make a network namespace (needs root, unshare and ip): running on the host network',
  );
  child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
}
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
