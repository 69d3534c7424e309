/**
 * What federated gateways say to each other over a link (docs/design.md "Federation and large
 * meshes"): JSON text frames on a WebSocket. Everything received is parsed here first; a frame
 * that does not parse is counted and dropped (enough of them end the link).
 */
import * as z from 'zod/mini';
import { gatewayToNodeSchema, nodeToGatewaySchema } from '../../../core/protocol/messages.ts';

export const FEDERATION_VERSION = 1;
/** A path longer than this (gateways crossed) is dropped: the hop limit. */
export const MAX_HOPS = 8;
/** The largest frame a link accepts: a signaling message (≤ 64 KiB) and its envelope. */
export const MAX_FRAME_BYTES = 80 * 1024;

const gatewayId = z.string().check(z.regex(/^[a-z2-7]{52}$/));
const nodeId = gatewayId;
const dialId = z.string().check(z.maxLength(64));
const nonce = z.string().check(z.regex(/^[A-Za-z0-9_-]{22,64}$/));

/** The opening of each side: a fresh challenge for the other to sign. */
export const helloSchema = z.object({ t: z.literal('hello'), v: z.int(), nonce });
/** The answer: this gateway's signed record, and its key's signature over the peer's nonce. */
export const authSchema = z.object({
  t: z.literal('auth'),
  record: z.string().check(z.minLength(10), z.maxLength(8192)),
  proof: z.string().check(z.minLength(10), z.maxLength(2048)),
});
/** The claims of the proof (a compact JWS signed by the gateway's node key). */
export const proofClaimsSchema = z.object({
  typ: z.literal('rtcmesh-federation'),
  from: gatewayId,
  nonce,
  iat: z.int(),
});

/** What travels between two gateways about a dial, routed hop by hop toward `to`. */
export const routedBodySchema = z.discriminatedUnion('k', [
  /** For a node held by gateway `to`: the caller's side of a dial `from` owns. */
  z.object({ k: z.literal('to-node'), node: nodeId, msg: gatewayToNodeSchema }),
  /** From a node held by `from`: the callee's side of a dial `to` owns. */
  z.object({ k: z.literal('from-node'), node: nodeId, msg: nodeToGatewaySchema }),
  /** The callee of a dial `to` owns is not (or no longer) at `from`. */
  z.object({ k: z.literal('gone'), node: nodeId, dialId }),
]);
export type RoutedBody = z.infer<typeof routedBodySchema>;

export const linkMessageSchema = z.discriminatedUnion('t', [
  /**
   * `node` (a node, or a gateway itself) is reachable along `path`: the gateway holding it
   * first, the sender last. Loop-free: a path naming the receiver is dropped.
   */
  z.object({
    t: z.literal('announce'),
    node: nodeId,
    path: z.array(gatewayId).check(z.minLength(1), z.maxLength(MAX_HOPS)),
  }),
  /** `node` is no longer reachable through the sender. */
  z.object({ t: z.literal('withdraw'), node: nodeId }),
  /**
   * TURN chaining: transit TURN servers the sender runs on its own address of this link,
   * relaying onto another network, with credentials for the receiver's nodes (§9).
   */
  z.object({
    t: z.literal('transit'),
    servers: z
      .array(
        z.object({
          host: z.string().check(z.maxLength(45)),
          port: z.int().check(z.gte(1), z.lte(65535)),
          username: z.string().check(z.maxLength(128)),
          credential: z.string().check(z.maxLength(128)),
        }),
      )
      .check(z.maxLength(4)),
  }),
  z.object({
    t: z.literal('route'),
    to: gatewayId,
    from: gatewayId,
    /** Hops left; a message at 0 is dropped. */
    ttl: z.int().check(z.gte(0), z.lte(MAX_HOPS)),
    body: routedBodySchema,
  }),
]);
export type LinkMessage = z.infer<typeof linkMessageSchema>;
export type RouteMessage = Extract<LinkMessage, { t: 'route' }>;
export type TransitServer = Extract<LinkMessage, { t: 'transit' }>['servers'][number];
