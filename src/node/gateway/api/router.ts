/**
 * The API's router, built from the one route table (core/protocol/api.ts): it matches the
 * path, checks the method, passes the guard (authentication and limits) for signed routes,
 * reads and validates the body with the route's schema, and sends what the handler returns.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { VerifiedRequest } from '../../../core/identity/index.ts';
import {
  API,
  type ApiName,
  type ApiRequest,
  type ApiResponse,
  matchApiPath,
} from '../../../core/protocol/api.ts';
import type { Schema } from '../../../core/protocol/schema.ts';
import { readJsonBody } from '../body.ts';
import { HttpError, sendJson } from '../http.ts';
import type { RateClass, RequestGuard } from './guard.ts';

export interface ApiCall<N extends ApiName> {
  req: IncomingMessage;
  res: ServerResponse;
  /** The signed caller (undefined on unsigned routes). */
  caller: VerifiedRequest;
  body: ApiRequest<N>;
  /** The dial id of /v1/dials/:id routes. */
  id: string;
}

export type ApiHandlers = { [N in ApiName]: (call: ApiCall<N>) => Promise<ApiResponse<N>> };

/** Which limit each signed route's caller is charged against. */
const RATE: Record<ApiName, RateClass | undefined> = {
  info: undefined,
  connect: 'connect',
  register: 'connect',
  dial: 'dial',
  pollDials: 'dial',
  pendingDial: 'dial',
  answerDial: 'dial',
  rejectDial: 'dial',
};

export class ApiRouter {
  constructor(
    private readonly guard: RequestGuard,
    private readonly handlers: ApiHandlers,
    private readonly maxBodyBytes: number,
  ) {}

  /** Serves an API request; false when the path is no API route. */
  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const match = matchApiPath(path);
    if (!match) return false;
    const route = API[match.name];
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== route.method)
      throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${path}`);
    const rate = RATE[match.name];
    const caller = rate ? await this.guard.authenticate(req, rate) : (undefined as never);
    const body =
      route.method === 'POST'
        ? await readJsonBody(req, route.request as Schema<unknown>, this.maxBodyBytes)
        : undefined;
    const handler = this.handlers[match.name] as (call: ApiCall<ApiName>) => Promise<unknown>;
    const value = await handler({ req, res, caller, body, id: match.id ?? '' } as ApiCall<ApiName>);
    sendJson(res, 200, value);
    return true;
  }
}
