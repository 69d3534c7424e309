/**
 * A real redis-server for cluster tests (TESTING.md, Services): on loopback, on a port
 * picked at run time, in its own temporary directory, stopped by its process id. It can be
 * stopped and started again on the same port and directory (a Redis restart), with or
 * without persistence.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freeTcpPort } from './ports.ts';

/** RTCMESH_REDIS_SERVER, else redis-server on the PATH, else Debian's /usr/bin/redis-server. */
export const REDIS_SERVER = process.env.RTCMESH_REDIS_SERVER ?? findOnPath('redis-server');

function findOnPath(command: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, command))) return join(dir, command);
  }
  return `/usr/bin/${command}`;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function redisServerAvailable(): boolean {
  return executable(REDIS_SERVER);
}

/**
 * Throws at once, saying how to install it, when there is no redis-server to start: a test
 * that needs Redis then fails with that message instead of waiting for a hook's timeout.
 */
export function requireRedisServer(): void {
  if (redisServerAvailable()) return;
  throw new Error(
    process.env.RTCMESH_REDIS_SERVER
      ? `redis-server not found: RTCMESH_REDIS_SERVER=${REDIS_SERVER} is not an executable file`
      : 'redis-server not found: apt-get install -y redis-server',
  );
}

export interface RedisServerOptions {
  /** Keep data across a restart (append-only file in its directory); default off. */
  persist?: boolean;
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    requireRedisServer();
    const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-redis-'));
    // A port taken between the probe and redis-server's bind is retried with another.
    for (let attempt = 0; ; attempt++) {
      const server = new RedisServer(await freeTcpPort(), dir, options);
      try {
        await server.startProcess();
        return server;
      } catch (err) {
        // A spawn failure will not go away on another port.
        if (attempt >= 4 || String(err).includes('could not start')) {
          rmSync(dir, { recursive: true, force: true });
          throw err;
        }
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stops the process (SIGTERM, then SIGKILL); the directory stays for a restart. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  /** Starts it again on the same port and directory. */
  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async startProcess(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.options.persist ? 'yes' : 'no',
      '--appendfsync',
      'always',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
      '--loglevel',
      'warning',
    ];
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.output = '';
    const collect = (d: Buffer) => {
      this.output += d.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.child = child;
    // A process that could not start (ENOENT, EACCES) emits 'error' and never 'exit'.
    let failed = false;
    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        failed = true;
        reject(new Error(`redis-server exited with ${code ?? signal}:\n${this.output}`));
      });
      child.once('error', (err) => {
        failed = true;
        reject(new Error(`redis-server could not start (${REDIS_SERVER}): ${err.message}`));
      });
    });
    exited.catch(() => {});
    // Ready when it answers PING.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (failed) await exited;
      if (await ping(this.port)) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not answer on port ${this.port}:\n${this.output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** One inline PING over a fresh TCP connection: true on +PONG. */
async function ping(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}
