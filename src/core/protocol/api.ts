/**
 * The gateway's HTTP API as one table: every route's method, path, whether it is signed, and
 * the schemas of what goes in and comes out. The gateway's router and the one typed client
 * (every caller: node, service worker, app, tests, benchmarks) are both built from it, so
 * the two cannot drift apart.
 */

import * as z from 'zod/mini';
import {
  connectRequestSchema,
  connectResponseSchema,
  dialAnswerRequestSchema,
  dialRejectRequestSchema,
  gatewayInfoSchema,
  httpDialRequestSchema,
  httpDialResponseSchema,
  pendingDialResponseSchema,
  pollDialsResponseSchema,
  registerRequestSchema,
  registerResponseSchema,
} from './messages.ts';

export interface ApiRoute<Req extends z.ZodMiniType, Res extends z.ZodMiniType> {
  method: 'GET' | 'POST';
  /** The path; `:id` stands for a dial id. */
  path: string;
  /** Requests carry `Authorization: vapid …` signed by the node key. */
  signed: boolean;
  request: Req;
  response: Res;
}

const route = <Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  r: ApiRoute<Req, Res>,
): ApiRoute<Req, Res> => r;

const none = z.undefined();

export const API = {
  info: route({
    method: 'GET',
    path: '/v1/info',
    signed: false,
    request: none,
    response: gatewayInfoSchema,
  }),
  connect: route({
    method: 'POST',
    path: '/v1/connect',
    signed: true,
    request: connectRequestSchema,
    response: connectResponseSchema,
  }),
  register: route({
    method: 'POST',
    path: '/v1/register',
    signed: true,
    request: registerRequestSchema,
    response: registerResponseSchema,
  }),
  dial: route({
    method: 'POST',
    path: '/v1/dial',
    signed: true,
    request: httpDialRequestSchema,
    response: httpDialResponseSchema,
  }),
  /** HTTPS-only accept: a signed long-poll for incoming calls (`?wait=25s`, at most 30 s). */
  pollDials: route({
    method: 'GET',
    path: '/v1/dials',
    signed: true,
    request: none,
    response: pollDialsResponseSchema,
  }),
  pendingDial: route({
    method: 'GET',
    path: '/v1/dials/:id',
    signed: true,
    request: none,
    response: pendingDialResponseSchema,
  }),
  answerDial: route({
    method: 'POST',
    path: '/v1/dials/:id/answer',
    signed: true,
    request: dialAnswerRequestSchema,
    response: z.object({ dialId: z.string(), answered: z.literal(true) }),
  }),
  rejectDial: route({
    method: 'POST',
    path: '/v1/dials/:id/reject',
    signed: true,
    request: dialRejectRequestSchema,
    response: z.object({ dialId: z.string(), rejected: z.literal(true) }),
  }),
} as const;

export type ApiName = keyof typeof API;
export type ApiRequest<N extends ApiName> = z.infer<(typeof API)[N]['request']>;
export type ApiResponse<N extends ApiName> = z.infer<(typeof API)[N]['response']>;

/** A route's path with its `:id` filled in (base64url dial ids need no escaping). */
export function apiPath(name: ApiName, id?: string): string {
  const path = API[name].path;
  if (!path.includes(':id')) return path;
  if (id === undefined || !/^[A-Za-z0-9_-]{1,64}$/.test(id))
    throw new Error(`${path} needs a dial id, not ${String(id)}`);
  return path.replace(':id', id);
}

/**
 * Matches a request path against the table: the route and its `:id`, or undefined.
 * Dial ids are 16 to 64 base64url characters.
 */
export function matchApiPath(path: string): { name: ApiName; id?: string } | undefined {
  for (const [name, r] of Object.entries(API) as [
    ApiName,
    ApiRoute<z.ZodMiniType, z.ZodMiniType>,
  ][]) {
    if (!r.path.includes(':id')) {
      if (r.path === path) return { name };
      continue;
    }
    const [head, tail] = r.path.split(':id') as [string, string];
    if (!path.startsWith(head) || !path.endsWith(tail)) continue;
    const id = path.slice(head.length, path.length - tail.length);
    if (/^[A-Za-z0-9_-]{16,64}$/.test(id)) return { name, id };
  }
  return undefined;
}
