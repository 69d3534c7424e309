// Draws the rtcmesh icons (three linked nodes) as PNGs into public/icons.
// Run with `npm run icons`; the PNGs are committed, so builds do not need this.
import { mkdirSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}
function png(size, pixel) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const [r, g, b, a] = pixel(x + 0.5, y + 0.5);
      raw.set([r, g, b, a], y * (size * 4 + 1) + 1 + x * 4);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const BG = [15, 23, 38];
const LINE = [79, 209, 197];
const NODE = [232, 238, 249];
const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));
const clamp01 = (v) => Math.max(0, Math.min(1, v));
function segmentDistance(px, py, [ax, ay], [bx, by]) {
  const dx = bx - ax;
  const dy = by - ay;
  const t = clamp01(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy));
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}

/** `scale` shrinks the drawing toward the centre (maskable icons keep a safe zone). */
function drawing(size, { scale, rounded }) {
  const c = size / 2;
  const at = (x, y) => [c + (x - 0.5) * size * scale, c + (y - 0.5) * size * scale];
  const nodes = [at(0.5, 0.2), at(0.2, 0.75), at(0.8, 0.75)];
  const lineWidth = size * scale * 0.045;
  const radius = size * scale * 0.11;
  const corner = size * 0.22;
  return (x, y) => {
    // Rounded-square background for "any" icons; full bleed for maskable.
    let alpha = 1;
    if (rounded) {
      const qx = Math.max(Math.abs(x - c) - (c - corner), 0);
      const qy = Math.max(Math.abs(y - c) - (c - corner), 0);
      alpha = clamp01(corner - Math.hypot(qx, qy) + 0.5);
    }
    let color = BG;
    const dLine = Math.min(
      segmentDistance(x, y, nodes[0], nodes[1]),
      segmentDistance(x, y, nodes[1], nodes[2]),
      segmentDistance(x, y, nodes[2], nodes[0]),
    );
    color = mix(color, LINE, clamp01(lineWidth / 2 - dLine + 0.5));
    const dNode = Math.min(...nodes.map(([nx, ny]) => Math.hypot(x - nx, y - ny)));
    color = mix(color, LINE, clamp01(radius + lineWidth - dNode + 0.5));
    color = mix(color, NODE, clamp01(radius - dNode + 0.5));
    return [...color, Math.round(alpha * 255)];
  };
}

mkdirSync('public/icons', { recursive: true });
writeFileSync('public/icons/icon-192.png', png(192, drawing(192, { scale: 0.8, rounded: true })));
writeFileSync('public/icons/icon-512.png', png(512, drawing(512, { scale: 0.8, rounded: true })));
writeFileSync(
  'public/icons/maskable-512.png',
  png(512, drawing(512, { scale: 0.6, rounded: false })),
);
console.log('wrote public/icons/{icon-192,icon-512,maskable-512}.png');
