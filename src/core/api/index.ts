/** The gateway HTTP API client (one for every caller: node, service worker, app, tests, benchmarks). */
export {
  type FailedAttempt,
  GatewayHttpError,
  GatewayProtocolError,
  GatewayUnreachable,
} from './errors.ts';
export {
  type ApiCallOptions,
  type ApiResult,
  type CallOptions,
  DEFAULT_TIMEOUT_MS,
  DIAL_TIMEOUT_MS,
  GatewayApi,
  type GatewayApiOptions,
} from './gateway-api.ts';
