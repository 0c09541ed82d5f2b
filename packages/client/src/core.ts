import { APIConnectionError, APITimeoutError, APIUserAbortError, CreditgateError } from './errors.js';

export interface ClientOptions {
  /** The server's origin, e.g. `https://creditgate.example.com` (no `/api`). */
  baseUrl: string;
  apiKey: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Per attempt; for streams it covers the wait for the response headers only. Default 10 minutes. */
  timeoutMs?: number;
  /** Retries after the first attempt (see `isRetryable`). Default 2. */
  maxRetries?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Sent on POSTs; generated when omitted. One key per logical call, reused by its retries. */
  idempotencyKey?: string;
  timeoutMs?: number;
}

type Query = Record<string, string | number | undefined>;

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Query;
  body?: unknown;
}

/** A streamed answer whose headers arrived; `controller` aborts its HTTP request. */
export interface OpenStream {
  response: Response & { body: ReadableStream<Uint8Array> };
  controller: AbortController;
  callerSignal: AbortSignal | undefined;
  /** Stops following the caller's signal; called when the stream ends. */
  release: () => void;
}

const DEFAULT_TIMEOUT_MS = 600_000;
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8_000;
/** A Retry-After beyond this is not waited for in-process; the default backoff applies instead. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Transport shared by the team and admin clients: auth, JSON, timeouts combined with the caller's signal, and
 * retries. Every POST carries one Idempotency-Key for all its attempts, so a retry after a lost answer replays
 * the first answer on the server instead of creating or charging twice.
 */
export class ApiClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? 2;
  }

  /** A JSON request; resolves to the parsed body of a 2xx answer. */
  protected async request<T>(request: ApiRequest, options: RequestOptions = {}): Promise<T> {
    const text = await this.send(request, options, 'application/json', async (response) => response.text());
    try {
      return (text ? JSON.parse(text) : undefined) as T;
    } catch (cause) {
      throw new CreditgateError('the server answered with invalid JSON', { cause });
    }
  }

  /** A request answered with text (a CSV export), returned as it came. */
  protected requestText(request: ApiRequest, accept: string, options: RequestOptions = {}): Promise<string> {
    return this.send(request, options, accept, async (response) => response.text());
  }

  /** A request answered with `text/event-stream`; resolves once the headers arrived (retries end there). */
  protected stream(request: ApiRequest, options: RequestOptions = {}): Promise<OpenStream> {
    return this.send(request, options, 'text/event-stream', async (response, controller, release) => {
      if (!response.body) throw new APIConnectionError('the stream has no body');
      return { response: response as OpenStream['response'], controller, callerSignal: options.signal, release };
    });
  }

  private async send<T>(
    request: ApiRequest,
    options: RequestOptions,
    accept: string,
    read: (response: Response, controller: AbortController, release: () => void) => Promise<T>,
  ): Promise<T> {
    const idempotencyKey = request.method === 'POST' ? (options.idempotencyKey ?? `cg-${randomId()}`) : undefined;
    const init = this.buildInit(request, accept, idempotencyKey);
    const url = this.buildUrl(request.path, request.query);
    const streaming = accept === 'text/event-stream';
    for (let attempt = 0; ; attempt++) {
      // Per attempt: aborts on timeout, on the caller's signal, and for a stream later on `break`/abort().
      const controller = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, options.timeoutMs ?? this.timeoutMs);
      const release = follow(options.signal, controller);
      let streamOpened = false;
      let error: CreditgateError;
      let headers: Headers | undefined;
      try {
        const response = await this.fetchImpl(url, { ...init, signal: controller.signal });
        headers = response.headers;
        if (response.ok) {
          const value = await read(response, controller, release);
          streamOpened = streaming;
          return value;
        }
        error = CreditgateError.fromResponse(response.status, await readErrorBody(response), response.headers);
      } catch (cause) {
        if (cause instanceof CreditgateError) throw cause;
        error = toTransportError(cause, options.signal, timedOut);
      } finally {
        // A stream's timeout ends with its headers: a long generation is not a hung request. The caller's signal
        // keeps governing an open stream until it ends (sseMessages releases it).
        clearTimeout(timer);
        if (!streamOpened) release();
      }
      if (attempt >= this.maxRetries || !isRetryable(error)) throw error;
      await sleep(retryDelayMs(attempt, headers), options.signal);
    }
  }

  private buildInit(request: ApiRequest, accept: string, idempotencyKey: string | undefined): RequestInit {
    const headers: Record<string, string> = { accept };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
    if (request.body === undefined) return { method: request.method, headers };
    headers['content-type'] = 'application/json';
    return { method: request.method, headers, body: JSON.stringify(request.body) };
  }

  private buildUrl(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
    const search = params.toString();
    return `${this.baseUrl}${path}${search ? `?${search}` : ''}`;
  }
}

/**
 * Aborts `controller` when the caller's signal aborts, until the returned function is called. (AbortSignal.any
 * would do, but Node 18 lacks it.)
 */
function follow(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return () => undefined;
  }
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/** A random UUID for Idempotency-Keys: Web Crypto where there is one (Node 19+, browsers, Deno, Bun, edge). */
function randomId(): string {
  const webCrypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (webCrypto?.randomUUID) return webCrypto.randomUUID();
  // Node 18 without --experimental-global-webcrypto: 128 random bits from Math.random are unique enough for a key
  // that only has to differ from this team's other keys within IDEMPOTENCY_TTL_HOURS.
  let id = '';
  for (let i = 0; i < 4; i++) id += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return id;
}

/** Encodes one path segment, so ids can never change the route. */
export const segment = (value: string) => encodeURIComponent(value);

async function readErrorBody(response: Response): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toTransportError(cause: unknown, userSignal: AbortSignal | undefined, timedOut: boolean): CreditgateError {
  if (userSignal?.aborted) return new APIUserAbortError('request was aborted', { cause });
  if (timedOut) return new APITimeoutError('request timed out', { cause });
  return new APIConnectionError('connection error', { cause });
}

/**
 * Retried: no answer at all (connection error or timeout — the Idempotency-Key makes that safe), 408, 429, 409
 * `idempotency_key_in_progress` (the first attempt still runs; a later retry gets its replay) and 5xx except
 * 502/504. Those two are creditgate's verdict on the model provider after it already fell back through the
 * model group; retrying would repeat a slow failure, so the caller decides.
 */
function isRetryable(error: CreditgateError): boolean {
  if (error instanceof APIUserAbortError) return false;
  if (error instanceof APIConnectionError) return true;
  const status = error.status ?? 0;
  if (status === 409) return error.code === 'idempotency_key_in_progress';
  if (status === 502 || status === 504) return false;
  return status === 408 || status === 429 || status >= 500;
}

/** Retry-After (ms or seconds or a date) when the server sent a sane one, else exponential backoff with jitter. */
function retryDelayMs(attempt: number, headers: Headers | undefined): number {
  const asked = headers && retryAfterMs(headers);
  if (asked !== undefined && asked >= 0 && asked <= MAX_RETRY_AFTER_MS) return asked;
  const backoff = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** attempt, MAX_RETRY_DELAY_MS);
  // Up to 25% jitter, so clients that failed together do not retry together.
  return backoff * (1 - Math.random() * 0.25);
}

function retryAfterMs(headers: Headers): number | undefined {
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms)) return ms;
  const value = headers.get('retry-after');
  if (!value) return undefined;
  const seconds = Number.parseFloat(value);
  return Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError('request was aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError('request was aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
