/**
 * /metrics as an operator reads it (prom-client text): latency histograms for connects,
 * dials and answers that move when nodes connect and dial, TURN and process figures beside.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { startNodeNode } from './support/node-node.ts';

let gateway: GatewayProcess;
beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway.stop();
});

async function scrape(): Promise<string> {
  const res = await fetch(`${gateway.url}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

const value = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : Number.NaN;
};

it('has connect, ring and answer histograms, and they move after a dial', async () => {
  const before = await scrape();
  for (const h of [
    'rtcmesh_connect_seconds',
    'rtcmesh_dial_ring_seconds',
    'rtcmesh_dial_answer_seconds',
  ]) {
    expect(before).toMatch(new RegExp(`^# TYPE ${h} histogram$`, 'm'));
    expect(value(before, `${h}_count`)).toBe(0);
  }
  const a = await startNodeNode(gateway.url);
  const b = await startNodeNode(gateway.url);
  try {
    const link = await a.node.connect(b.identity.id);
    expect(link.isOpen).toBe(true);
    const after = await scrape();
    expect(value(after, 'rtcmesh_connect_seconds_count')).toBe(2);
    expect(value(after, 'rtcmesh_dial_ring_seconds_count')).toBe(1);
    expect(value(after, 'rtcmesh_dial_answer_seconds_count')).toBe(1);
    expect(value(after, 'rtcmesh_dial_answer_seconds_sum')).toBeGreaterThan(0);
    expect(value(after, 'rtcmesh_dial_answer_seconds_bucket{le="+Inf"}')).toBe(1);
    expect(value(after, 'rtcmesh_dials_started_total')).toBe(1);
    expect(value(after, 'rtcmesh_sessions')).toBe(2);
    expect(value(after, 'rtcmesh_turn_allocations')).toBeGreaterThanOrEqual(0);
    expect(value(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(after).toMatch(/^rtcmesh_http_requests_total\{route="\/v1\/connect",status="200"\} 2$/m);
  } finally {
    a.node.stop();
    b.node.stop();
  }
});
