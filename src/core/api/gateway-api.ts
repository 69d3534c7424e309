/**
 * The one typed client of the gateway's HTTP API (README "Gateway endpoints"), built from the
 * route table in `protocol/api.ts`: paths, schemas, signing (DESIGN §1), errors, and failover
 * across a cluster's gateways. Platform-neutral: `fetch` and WebCrypto only, so the same code
 * runs in Node (the CLI node, tests, benchmarks), in windows and in the service worker.
 *
 *   const api = new GatewayApi({ gateways: [url, ...others], identity });
 *   const info = await api.info();
 *   await api.rejectDial(dialId, { reason: 'declined' });
 *
 * Failover: a gateway that cannot be reached, does not answer within the timeout, or answers
 * 502, 503 or 504 (down behind a proxy, full, cut off from its cluster) is passed over for the
 * next one; when none serves, the call fails with GatewayUnreachable. Any other error answer
 * is final: a GatewayHttpError with the gateway's status and code. So is a 502–504 whose code
 * is the outcome of a dial (`timeout`, `busy`, `gateway`): the call reached its callee's
 * gateway and ended there; ringing it again through another gateway would be a second call.
 */
import { audienceOf, createAuthorization, type NodeKey } from '../identity/index.ts';
import {
  API,
  type ApiName,
  type ApiRequest,
  type ApiResponse,
  type ApiRoute,
  apiPath,
} from '../protocol/api.ts';
import {
  DIAL_ERROR_CODES,
  errorBodySchema,
  MAX_MESSAGE_BYTES,
  parseValue,
  type Schema,
} from '../protocol/messages.ts';
import {
  type FailedAttempt,
  GatewayHttpError,
  GatewayProtocolError,
  GatewayUnreachable,
} from './errors.ts';

/** How long one gateway may take to answer a call, unless the call says otherwise. */
export const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * POST /v1/dial waits for the callee's answer (the gateway's --dial-timeout, 60 s by
 * default): its own timeout leaves room for that.
 */
export const DIAL_TIMEOUT_MS = 75_000;

export interface GatewayApiOptions {
  /** The gateways to use, the preferred first (http: or https: URLs; the path is ignored). */
  gateways: readonly string[];
  /** Signs the signed routes (only its `key` is used). Unsigned routes work without. */
  identity?: { readonly key: NodeKey };
  /** A stand-in for the global fetch (tests, instrumented callers). */
  fetch?: typeof fetch;
  /** Aborts every call made with this client (a node closing). */
  signal?: AbortSignal;
  /** How long one gateway may take to answer (default 15 s; POST /v1/dial: 75 s). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Aborts this call (the signal's reason is thrown; no other gateway is tried). */
  signal?: AbortSignal;
  /** How long one gateway may take to answer this call. */
  timeoutMs?: number;
  /** Try this gateway first (e.g. the one holding the node's session), then the others. */
  from?: string;
  /** false: ask only the first gateway (`from`, or the preferred one); no failover. */
  failover?: boolean;
  /** Query parameters (e.g. GET /v1/dials `wait`). */
  query?: Readonly<Record<string, string>>;
}

/** The dial id of a `/v1/dials/:id` route (checked when the path is made). */
type IdOption = { id?: string };
type BodyOption<N extends ApiName> = [ApiRequest<N>] extends [undefined]
  ? { body?: undefined }
  : { body: ApiRequest<N> };

/** What `call(name, …)` takes: the dial id for `/v1/dials/:id` routes, the request body for POSTs. */
export type ApiCallOptions<N extends ApiName> = CallOptions & IdOption & BodyOption<N>;

/** A response and the gateway that gave it. */
export interface ApiResult<N extends ApiName> {
  data: ApiResponse<N>;
  gateway: string;
}

/** Dial outcomes are answers about the call, not about the gateway: never failed over. */
const DIAL_OUTCOMES: ReadonlySet<string> = new Set(DIAL_ERROR_CODES);

function isHttpUrl(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/** The same URLs in the same order, without repeats or anything that is not http(s). */
function uniqueGateways(urls: Iterable<string>): string[] {
  return [...new Set([...urls].filter(isHttpUrl))];
}

/**
 * Why a fetch failed, as a person can act on it. Node's fetch (undici) says only "fetch
 * failed" and keeps the reason (refused, no such host, a certificate it does not trust) in
 * `cause`, an AggregateError when every address of the host failed.
 */
function whyFetchFailed(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  if (!(cause instanceof Error)) return err.message;
  if (cause.message) return cause.message;
  const each = cause instanceof AggregateError ? cause.errors : [];
  const messages = [...new Set(each.map((e) => (e instanceof Error ? e.message : String(e))))];
  return messages.length ? messages.join('; ') : err.message;
}

export class GatewayApi {
  private list: string[];
  private readonly doFetch: typeof fetch;

  constructor(private readonly options: GatewayApiOptions) {
    this.list = uniqueGateways(options.gateways);
    const custom = options.fetch;
    // Never call the global fetch as a method of this object: browsers insist on its `this`.
    this.doFetch = custom
      ? (input, init) => custom(input, init)
      : (input, init) => globalThis.fetch(input, init);
  }

  /** The gateways in use, the preferred first. */
  get gateways(): readonly string[] {
    return this.list;
  }

  /** Replaces the gateways (e.g. the cluster's, as /v1/info lists them), the preferred first. */
  setGateways(urls: readonly string[]): void {
    this.list = uniqueGateways(urls);
  }

  /** Calls a route; resolves with the validated response. */
  async call<N extends ApiName>(name: N, options: ApiCallOptions<N>): Promise<ApiResponse<N>> {
    return (await this.send(name, options)).data;
  }

  /** Calls a route; resolves with the validated response and the gateway that gave it. */
  async send<N extends ApiName>(name: N, options: ApiCallOptions<N>): Promise<ApiResult<N>> {
    const route = API[name] as ApiRoute<Schema<unknown>, Schema<unknown>>;
    const query = options.query ? `?${new URLSearchParams(options.query)}` : '';
    const path = apiPath(name, options.id) + query;
    const order = uniqueGateways([...(options.from ? [options.from] : []), ...this.list]);
    const candidates = options.failover === false ? order.slice(0, 1) : order;
    const attempts: FailedAttempt[] = [];
    for (const gateway of candidates) {
      const outcome = await this.attempt(route, name, gateway, path, options);
      if ('data' in outcome) return { data: outcome.data as ApiResponse<N>, gateway };
      attempts.push({ gateway, error: outcome.failed });
    }
    throw new GatewayUnreachable(attempts);
  }

  /** One gateway: the response, or why the next gateway should be tried; throws what is final. */
  private async attempt(
    route: ApiRoute<Schema<unknown>, Schema<unknown>>,
    name: ApiName,
    gateway: string,
    path: string,
    options: CallOptions & { body?: unknown },
  ): Promise<{ data: unknown } | { failed: Error }> {
    const callerSignals = [options.signal, this.options.signal].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    const aborted = callerSignals.find((s) => s.aborted);
    if (aborted) throw aborted.reason;
    const timeoutMs =
      options.timeoutMs ??
      (name === 'dial' ? DIAL_TIMEOUT_MS : (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS));
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([...callerSignals, timeout]);
    const url = new URL(path, gateway).href;
    const headers: Record<string, string> = {};
    if (route.signed) {
      const key = this.options.identity?.key;
      if (!key)
        throw new Error(`${route.method} ${route.path} is signed: give the client an identity`);
      // A token is single-use and names one gateway: a fresh one for every request.
      headers.authorization = await createAuthorization(key, audienceOf(gateway));
    }
    const init: RequestInit = { method: route.method, headers, signal };
    if (route.method === 'POST') {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.body ?? {});
    }
    let status: number;
    let text: string;
    try {
      const res = await this.doFetch(url, init);
      status = res.status;
      text = await res.text();
    } catch (err) {
      const callerAbort = callerSignals.find((s) => s.aborted);
      if (callerAbort) throw callerAbort.reason;
      if (timeout.aborted)
        return { failed: new Error(`${gateway}: no answer in ${timeoutMs / 1000} s`) };
      return { failed: new Error(`cannot reach ${gateway}: ${whyFetchFailed(err)}`) };
    }
    if (status >= 200 && status < 300) {
      const json = parseJson(text);
      const parsed = parseValue(route.response, json);
      if (!parsed.ok)
        throw new GatewayProtocolError(
          `${gateway} sent a bad ${route.method} ${route.path} response: ${parsed.message}`,
          gateway,
        );
      return { data: parsed.value };
    }
    const body = parseValue(errorBodySchema, parseJson(text));
    const error = body.ok
      ? new GatewayHttpError(status, body.value.error.code, body.value.error.message, gateway)
      : new GatewayHttpError(
          status,
          `http-${status}`,
          `${gateway} answered ${status}${text ? `: ${text.slice(0, 200)}` : ''}`,
          gateway,
        );
    if (status >= 502 && status <= 504 && !DIAL_OUTCOMES.has(error.code)) return { failed: error };
    throw error;
  }

  /** GET /v1/info: the gateway's identity, VAPID key and (cluster mode) the cluster's gateways. */
  info(options: CallOptions = {}): Promise<ApiResponse<'info'>> {
    return this.call('info', options);
  }

  /** POST /v1/connect (signed): a session; use `send` to learn which gateway answered. */
  connect(body: ApiRequest<'connect'>, options: CallOptions = {}): Promise<ApiResponse<'connect'>> {
    return this.call('connect', { ...options, body });
  }

  /** POST /v1/register (signed): the node's record and its push subscription (null removes it). */
  register(
    body: ApiRequest<'register'>,
    options: CallOptions = {},
  ): Promise<ApiResponse<'register'>> {
    return this.call('register', { ...options, body });
  }

  /** POST /v1/dial (signed): a gathered offer; resolves with the callee's answer. */
  dial(body: ApiRequest<'dial'>, options: CallOptions = {}): Promise<ApiResponse<'dial'>> {
    return this.call('dial', { ...options, body });
  }

  /**
   * GET /v1/dials?wait= (signed; HTTPS-only accept): the calls for this node, at once or as
   * soon as one comes within `waitS` seconds (the gateway caps it at 30 s). One poll per node:
   * a newer one ends this one with `replaced: true`. The node must be registered.
   */
  pollDials(waitS: number, options: CallOptions = {}): Promise<ApiResponse<'pollDials'>> {
    return this.call('pollDials', {
      timeoutMs: (waitS + 15) * 1000,
      ...options,
      query: { wait: `${Math.round(waitS)}s` },
    });
  }

  /** GET /v1/dials/:id (signed, by the callee): the call waiting for this node. */
  pendingDial(id: string, options: CallOptions = {}): Promise<ApiResponse<'pendingDial'>> {
    return this.call('pendingDial', { ...options, id });
  }

  /** POST /v1/dials/:id/answer (signed, by the callee): a gathered answer. */
  answerDial(
    id: string,
    body: ApiRequest<'answerDial'>,
    options: CallOptions = {},
  ): Promise<ApiResponse<'answerDial'>> {
    return this.call('answerDial', { ...options, id, body });
  }

  /** POST /v1/dials/:id/reject (signed, by the callee): the caller is told at once. */
  rejectDial(
    id: string,
    body: ApiRequest<'rejectDial'>,
    options: CallOptions = {},
  ): Promise<ApiResponse<'rejectDial'>> {
    return this.call('rejectDial', { ...options, id, body });
  }
}

function parseJson(text: string): unknown {
  if (text.length > MAX_MESSAGE_BYTES) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
