/** Why a dial failed: one code per outcome a user must be told apart. */
import type { DialErrorCode } from '../protocol/messages.ts';

export class DialError extends Error {
  override readonly name = 'DialError';
  constructor(
    readonly code: DialErrorCode | 'not-connected' | 'udp-blocked',
    message: string,
  ) {
    super(message);
  }
}

/**
 * A node gave up connecting: no gateway (or, on a LAN, none that proved its ID) gave it a
 * session or HTTP mode in time. `lastProblem` is the last reason it was told, if any.
 */
export class GatewayConnectError extends Error {
  override readonly name = 'GatewayConnectError';
  constructor(
    message: string,
    readonly lastProblem: string | undefined,
  ) {
    super(lastProblem ? `${message} (last: ${lastProblem})` : message);
  }
}

export const DIAL_ERROR_TEXT: Record<DialError['code'], string> = {
  'not-found': 'not found',
  offline: 'offline',
  declined: 'declined',
  timeout: 'timed out',
  identity: 'identity check failed',
  busy: 'busy',
  'rate-limited': 'too many calls, wait a little',
  invalid: 'invalid address',
  cancelled: 'cancelled',
  gateway: 'gateway error',
  'not-connected': 'not connected to the gateway',
  'udp-blocked': 'UDP is blocked',
};
