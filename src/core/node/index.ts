/** The mesh node API, the same in browsers and Node: dial and listen on named services. */
export { DIAL_ERROR_TEXT, DialError, GatewayConnectError } from './errors.ts';
export type { GatewayStatus, LocatedGateway, SignalingMode } from './gateway-client.ts';
export {
  type AcceptPolicy,
  type CallDecision,
  type DialOptions,
  type DialProgress,
  decideByPolicy,
  type IncomingCall,
  MeshNode,
  type MeshNodeOptions,
} from './mesh-node.ts';
export { PeerLink } from './peer-link.ts';
export type { PathInfo, RtcPlatform } from './rtc.ts';
export { describePath, relayHops } from './rtc.ts';
export { MeshStream, type StreamMessage, type StreamOptions } from './stream.ts';
