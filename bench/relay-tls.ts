/**
 * TURN over TLS (the gateway's 443 front door) against coturn's TLS listener, and against
 * the gateway's own UDP relay, same machine, same run: 64 MiB between two relay-only pages,
 * and the time from offer to an open channel. Chromium is told to accept the test
 * certificate (`--ignore-certificate-errors`, loopback only).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, launchOptions } from '../e2e/support/browser.ts';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { freeTcpPort } from '../e2e/support/ports.ts';
import { selfSigned } from '../test/support/pebble.ts';
import { newPage } from './browser.ts';
import {
  cpuSeconds,
  credentials,
  median,
  RELAY_ROUNDS,
  type Relay,
  relayedTransfer,
  startCoturn,
} from './relay.ts';

export interface TlsRelayFigures {
  name: string;
  /** Best and median of the rounds. */
  mbPerS: number;
  medianMbPerS: number;
  /** CPU seconds the relay's process spent per 64 MiB run (median). */
  cpuS: number;
  connectMs: number;
}

export async function relayTlsBench(): Promise<TlsRelayFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-bench-tls-'));
  const { cert, key } = selfSigned(dir, 'gateway', 'IP:127.0.0.1');
  const gateway = await startGateway({
    args: [
      '--tls-listen',
      '127.0.0.1:0',
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--turn-allow-private',
      '--limit',
      'turn.allocationsPerUser=1000',
      '--limit',
      'turn.bytesPerSecondPerUser=1000000000',
    ],
  });
  const tlsPort = Number(/tls port (\d+)/.exec(gateway.output())?.[1]);
  const coturnTlsPort = await freeTcpPort();
  const coturn = await startCoturn({ port: coturnTlsPort, cert, key });
  const browser = await chromium.launch({
    ...launchOptions(),
    args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'],
  });
  try {
    const ours: Relay = {
      port: gateway.turnPort ?? 0,
      secret: readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim(),
    };
    const a = await newPage(browser, 'about:blank');
    const b = await newPage(browser, 'about:blank');
    const servers = {
      tls: [{ urls: `turns:127.0.0.1:${tlsPort}?transport=tcp`, ...credentials(ours, 'bench') }],
      coturnTls: [
        {
          urls: `turns:127.0.0.1:${coturnTlsPort}?transport=tcp`,
          ...credentials(coturn.relay, 'bench'),
        },
      ],
      udp: [{ urls: `turn:127.0.0.1:${ours.port}?transport=udp`, ...credentials(ours, 'bench') }],
    };
    const best = { tls: [] as number[], coturnTls: [] as number[], udp: [] as number[] };
    const connect = { tls: [] as number[], coturnTls: [] as number[], udp: [] as number[] };
    const cpu = { tls: [] as number[], coturnTls: [] as number[], udp: [] as number[] };
    const pid = {
      tls: gateway.process.pid,
      coturnTls: coturn.process.pid,
      udp: gateway.process.pid,
    };
    // Interleaved rounds, so load changes on the machine hit every relay alike.
    for (let i = 0; i < RELAY_ROUNDS; i++) {
      for (const k of ['coturnTls', 'tls', 'udp'] as const) {
        const cpuBefore = cpuSeconds(pid[k]);
        const r = await relayedTransfer(a.page, b.page, servers[k]);
        cpu[k].push(cpuSeconds(pid[k]) - cpuBefore);
        best[k].push(r.mbPerS);
        connect[k].push(r.connectMs);
      }
      console.log(
        `  round ${i + 1}: coturn TLS ${best.coturnTls[i]?.toFixed(2)} MB/s (${cpu.coturnTls[i]?.toFixed(1)} CPU s), gateway TLS ${best.tls[i]?.toFixed(2)} MB/s (${cpu.tls[i]?.toFixed(1)} CPU s), gateway UDP ${best.udp[i]?.toFixed(2)} MB/s; TLS ratio ${((best.tls[i] ?? 0) / (best.coturnTls[i] ?? 1)).toFixed(2)}`,
      );
    }
    await a.context.close();
    await b.context.close();
    const row = (name: string, k: keyof typeof best): TlsRelayFigures => ({
      name,
      mbPerS: Math.max(...best[k]),
      medianMbPerS: median(best[k]),
      cpuS: median(cpu[k]),
      connectMs: Math.min(...connect[k]),
    });
    return [
      row('coturn, TURN over TLS (reference)', 'coturnTls'),
      row('rtcmesh gateway, TURN over TLS (front door)', 'tls'),
      row('rtcmesh gateway, TURN over UDP', 'udp'),
    ];
  } finally {
    await browser.close();
    coturn.process.kill('SIGTERM');
    await gateway.stop();
  }
}
