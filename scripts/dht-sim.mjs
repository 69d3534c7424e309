// Kademlia-style presence lookup among federated gateways, simulated (docs/design.md
// "Federation and large meshes"): how many hops and messages a lookup of a node's presence
// takes at 1,000 and 10,000 gateways, against today's full-table federation in which every
// presence change reaches every gateway.
//
//   node scripts/dht-sim.mjs [gateways…]        (default: 1000 10000)
//
// Model: 32-bit gateway IDs (XOR metric), k-buckets of K contacts drawn from each bucket's
// range, iterative lookups with ALPHA queries in flight per round (the round count is the
// hop count), a node's presence stored on the K gateways closest to its ID. Deterministic:
// a seeded PRNG, so a run can be repeated.

const K = 20;
const ALPHA = 3;
const LOOKUPS = 2000;
/** Workload for the per-gateway message figures (per hour). */
const NODES_PER_GATEWAY = 50;
const PUBLISHES_PER_NODE_PER_HOUR = 1; // presence republished (and on every reconnect)
const DIALS_PER_NODE_PER_HOUR = 4;

let seed = 0x9e3779b9;
function random() {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randomId = () => Math.floor(random() * 2 ** 32) >>> 0;
const distance = (a, b) => (a ^ b) >>> 0;

function lowerBound(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Every gateway's routing table: for bucket i, up to K gateways at distance [2^i, 2^(i+1)). */
function buildNetwork(n) {
  const ids = new Set();
  while (ids.size < n) ids.add(randomId());
  const sorted = Float64Array.from(ids).sort();
  const tables = new Map();
  let entries = 0;
  for (const id of sorted) {
    const contacts = [];
    for (let i = 0; i < 32; i++) {
      // Gateways whose distance has its top bit at i: same bits above i, bit i flipped.
      const base = Number((BigInt(id ^ (2 ** i)) >> BigInt(i)) << BigInt(i)) >>> 0;
      const from = lowerBound(sorted, base);
      const to = lowerBound(sorted, base + 2 ** i);
      const count = to - from;
      if (count <= 0) continue;
      if (count <= K) for (let j = from; j < to; j++) contacts.push(sorted[j]);
      else {
        const picked = new Set();
        while (picked.size < K) picked.add(from + Math.floor(random() * count));
        for (const j of picked) contacts.push(sorted[j]);
      }
    }
    entries += contacts.length;
    tables.set(id, contacts);
  }
  return { sorted, tables, meanTable: entries / n };
}

const closest = (candidates, key, count) =>
  [...candidates].sort((a, b) => distance(a, key) - distance(b, key)).slice(0, count);

/** The K gateways closest to `key`: where its presence is stored. */
function holders(net, key) {
  return new Set(closest(net.sorted, key, K));
}

/**
 * An iterative lookup of `key` from gateway `from`: rounds, queries, whether it found the
 * closest. With `stored` (FIND_VALUE, a dial's presence lookup) it stops at the first
 * gateway that holds the value; without (FIND_NODE, a publish) it runs to the K closest.
 */
function lookup(net, from, key, stored) {
  const queried = new Set([from]);
  if (stored?.has(from)) return { rounds: 0, messages: 0, found: true };
  let shortlist = closest(net.tables.get(from), key, K);
  let rounds = 0;
  let messages = 0;
  for (;;) {
    const toAsk = shortlist.filter((g) => !queried.has(g)).slice(0, ALPHA);
    if (toAsk.length === 0) break;
    rounds++;
    const before = distance(shortlist[0], key);
    const seen = new Set(shortlist);
    // The round's queries go out at once: all count, even when one of them finds the value.
    messages += 2 * toAsk.length; // each query and its answer
    if (toAsk.some((g) => stored?.has(g))) return { rounds, messages, found: true };
    for (const g of toAsk) {
      queried.add(g);
      for (const c of closest(net.tables.get(g), key, K)) seen.add(c);
    }
    shortlist = closest(seen, key, K);
    // Kademlia: when a round brings nothing closer, ask every one of the K closest not yet
    // asked; done once all of them have answered.
    if (distance(shortlist[0], key) >= before) {
      const rest = shortlist.filter((g) => !queried.has(g));
      if (rest.length === 0) break;
      rounds++;
      for (const g of rest) {
        queried.add(g);
        messages += 2;
        for (const c of closest(net.tables.get(g), key, K)) seen.add(c);
      }
      shortlist = closest(seen, key, K);
      break;
    }
  }
  const truth = net.sorted.reduce((best, g) => (distance(g, key) < distance(best, key) ? g : best));
  return { rounds, messages, found: shortlist[0] === truth };
}

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
const rows = [];
for (const n of sizes.length ? sizes : [1000, 10000]) {
  const started = Date.now();
  const net = buildNetwork(n);
  const results = [];
  const values = [];
  for (let i = 0; i < LOOKUPS; i++) {
    const from = net.sorted[Math.floor(random() * n)];
    const key = randomId();
    results.push(lookup(net, from, key));
    values.push(lookup(net, from, key, holders(net, key)));
  }
  const rounds = results.map((r) => r.rounds);
  const messages = results.map((r) => r.messages);
  const meanMessages = messages.reduce((a, b) => a + b, 0) / results.length;
  const found = results.filter((r) => r.found).length / results.length;
  const valueRounds = values.map((r) => r.rounds);
  const valueMessages = values.map((r) => r.messages);
  const meanValueMessages = valueMessages.reduce((a, b) => a + b, 0) / values.length;
  // Per gateway per hour, sent + received, with the workload above. A publish is a lookup
  // and K stores (each acknowledged); a dial's presence lookup is one lookup.
  const nodes = n * NODES_PER_GATEWAY;
  const publishMsgs = meanMessages + 2 * K;
  const dhtPerGatewayHour =
    (nodes *
      (PUBLISHES_PER_NODE_PER_HOUR * publishMsgs + DIALS_PER_NODE_PER_HOUR * meanValueMessages)) /
    n;
  // Full-table federation: each gateway receives every presence change in the mesh at least
  // once (a lower bound: it also sends each on to its other links).
  const fullPerGatewayHour = nodes * PUBLISHES_PER_NODE_PER_HOUR;
  rows.push({
    n,
    meanValueRounds: valueRounds.reduce((a, b) => a + b, 0) / values.length,
    p95ValueRounds: percentile(valueRounds, 95),
    meanValueMessages,
    p95ValueMessages: percentile(valueMessages, 95),
    meanRounds: rounds.reduce((a, b) => a + b, 0) / results.length,
    p95Rounds: percentile(rounds, 95),
    meanMessages,
    p95Messages: percentile(messages, 95),
    found,
    meanTable: net.meanTable,
    dhtPerGatewayHour,
    dhtStored: NODES_PER_GATEWAY * K,
    fullPerGatewayHour,
    fullStored: nodes,
    seconds: (Date.now() - started) / 1000,
  });
}

console.log(
  `Kademlia presence lookup, simulated (K=${K}, ALPHA=${ALPHA}, ${LOOKUPS} lookups of random keys from random gateways; workload ${NODES_PER_GATEWAY} nodes per gateway, ${PUBLISHES_PER_NODE_PER_HOUR} presence publish and ${DIALS_PER_NODE_PER_HOUR} dials per node per hour):\n`,
);
console.log(
  '| gateways | dial lookup (FIND_VALUE) hops mean / p95 | its messages mean / p95 | publish (FIND_NODE) hops mean / p95 | its messages mean / p95 | found the closest | routing table | DHT msgs per gateway per hour | presence entries held | full table: msgs per gateway per hour (at least) | full table: entries held |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.n.toLocaleString('en')} | ${r.meanValueRounds.toFixed(2)} / ${r.p95ValueRounds} | ${r.meanValueMessages.toFixed(1)} / ${r.p95ValueMessages} | ${r.meanRounds.toFixed(2)} / ${r.p95Rounds} | ${r.meanMessages.toFixed(1)} / ${r.p95Messages} | ${(r.found * 100).toFixed(1)}% | ${r.meanTable.toFixed(0)} contacts | ${Math.round(r.dhtPerGatewayHour).toLocaleString('en')} | ${r.dhtStored.toLocaleString('en')} | ${r.fullPerGatewayHour.toLocaleString('en')} | ${r.fullStored.toLocaleString('en')} |`,
  );
