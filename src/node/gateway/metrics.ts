/**
 * The gateway's Prometheus metrics (prom-client): one registry per gateway, and each
 * component registers its own metrics on it. Labels only ever take values from fixed lists.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export { Registry as MetricsRegistry };

/** Latency buckets (seconds) for connects, dials and answers: 5 ms to 60 s. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * A counter whose value is read from a component's own tally when scraped (prom-client
 * counters only go up by `inc`, so it adds the difference).
 */
export function countedFrom(
  registry: Registry,
  name: string,
  help: string,
  read: () => number,
): Counter {
  let last = 0;
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > last) this.inc(now - last);
      last = Math.max(last, now);
    },
  });
}

/** Like countedFrom, one series per value of `label`, each read from its own running total. */
export function countedByLabel<V extends string>(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  values: readonly V[],
  read: (value: V) => number,
): Counter {
  const last = new Map<V, number>();
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const value of values) {
        const now = read(value);
        const before = last.get(value) ?? 0;
        // inc by 0 too, so every series is listed from the first scrape.
        this.inc({ [label]: value }, Math.max(0, now - before));
        last.set(value, Math.max(before, now));
      }
    },
  });
}

/** A gauge read from a component when scraped. */
export function gaugeFrom(
  registry: Registry,
  name: string,
  help: string,
  read: () => number,
): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

export function latencyHistogram(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[] = [],
): Histogram {
  return new Histogram({
    name,
    help,
    labelNames,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
}
