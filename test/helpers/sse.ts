import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { expect } from 'vitest';

/**
 * Server-sent events over HTTP as a client sees them: a POST whose answer is an event stream (or a JSON error),
 * read frame by frame as it arrives, to the end as text, or in the background; and the parsing of what came.
 */

/** A server to send to: its base URL, or anything that has one (a `TestApp`, a spawned process). */
export type Server = string | { url: string };

const baseUrl = (server: Server) => (typeof server === 'string' ? server : server.url);

export interface PostInit {
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A JSON POST with `token` as bearer credential; the answer's body is left unread. */
export function postStream(server: Server, path: string, token: string, body: unknown, init: PostInit = {}): Promise<Response> {
  return fetch(baseUrl(server) + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers },
    body: JSON.stringify(body),
    ...(init.signal && { signal: init.signal }),
  });
}

export interface RawResponse {
  status: number;
  headers: Headers;
  contentType: string;
  text: string;
}

/**
 * The same JSON POST through node:http on a connection of its own, sent at once: the caller sees exactly when the
 * status line arrives (the request's `response` event) and controls reading at the socket level.
 */
export function postNodeHttp(server: Server, path: string, token: string, body: unknown): ClientRequest {
  const url = new URL(baseUrl(server) + path);
  const payload = JSON.stringify(body);
  const req = httpRequest({
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'POST',
    agent: false,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
  });
  req.end(payload);
  return req;
}

/** A POST read to the end as text: for SSE endpoints, whose answer is either an event stream or a JSON error. */
export async function postRaw(server: Server, path: string, token: string, body: unknown, init: PostInit = {}): Promise<RawResponse> {
  const response = await postStream(server, path, token, body, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, contentType: response.headers.get('content-type') ?? '', text };
}

// ---------------------------------------------------------------------------------------------------------------
// In the background, transport failures included
// ---------------------------------------------------------------------------------------------------------------

export interface StreamResult {
  /** 0 when no HTTP answer came at all. */
  status: number;
  headers: Headers | undefined;
  contentType: string;
  text: string;
  /** The body could not be read to its end (connection reset, process killed, timeout). */
  transportError: string | undefined;
  /** Milliseconds from the request to the end of the body (or the transport error). */
  elapsedMs: number;
}

export interface OpenStream {
  /** Resolves when the status line and headers arrived and, for a 200, the first body bytes too. */
  started: Promise<void>;
  /** Resolves (never rejects) once the whole body was read or the transport failed. */
  done: Promise<StreamResult>;
}

/**
 * A POST whose answer is read incrementally: `started` resolves when the stream is really flowing (first bytes of
 * a 200 in hand), `done` with everything received. Transport failures are captured, never thrown.
 */
export function openStream(
  server: Server,
  path: string,
  token: string,
  body: unknown,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): OpenStream {
  const startedAt = performance.now();
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const done = (async (): Promise<StreamResult> => {
    let status = 0;
    let headers: Headers | undefined;
    let text = '';
    let transportError: string | undefined;
    try {
      const response = await postStream(server, path, token, body, {
        ...(options.headers && { headers: options.headers }),
        signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
      });
      status = response.status;
      headers = response.headers;
      if (status !== 200 || !response.body) markStarted();
      const decoder = new TextDecoder();
      for await (const chunk of response.body ?? []) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        if (text.length > 0) markStarted();
      }
      text += decoder.decode();
    } catch (error) {
      transportError = error instanceof Error ? `${error.name}: ${error.message}${error.cause ? ` (${String((error.cause as Error).message ?? error.cause)})` : ''}` : String(error);
    } finally {
      markStarted();
    }
    return {
      status,
      headers,
      contentType: headers?.get('content-type') ?? '',
      text,
      transportError,
      elapsedMs: Math.round(performance.now() - startedAt),
    };
  })();
  return { started, done };
}

// ---------------------------------------------------------------------------------------------------------------
// Frame by frame, as they arrive
// ---------------------------------------------------------------------------------------------------------------

export interface Frame {
  /** Date.now() when the bytes that completed this frame arrived. */
  at: number;
  raw: string;
  /** Only `:` lines: an SSE comment. */
  comment: boolean;
  /** The `event:` field (the last one, as SSE says), or null. */
  event: string | null;
  /** The `data:` lines, each without its prefix. */
  dataLines: string[];
  /** Those lines joined with `\n`, or null when there are none. */
  data: string | null;
}

export function parseFrame(raw: string, at: number): Frame {
  const lines = raw.split('\n');
  const comment = lines.every((line) => line.startsWith(':'));
  const event = lines.findLast((line) => line.startsWith('event:'))?.slice(6).trim() ?? null;
  const dataLines = lines.filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart());
  return { at, raw, comment, event, dataLines, data: dataLines.length > 0 ? dataLines.join('\n') : null };
}

export interface FrameReader {
  /** The next complete frame, or undefined at the end of the stream (which must not end inside a frame). */
  next(): Promise<Frame | undefined>;
  /** Every remaining frame, to the end. */
  rest(): Promise<Frame[]>;
}

/** Reads the body incrementally: a frame is handed out as soon as the bytes that complete it arrived. */
export function frameReader(response: Response): FrameReader {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const ready: Frame[] = [];
  let buffer = '';
  let ended = false;
  const next = async (): Promise<Frame | undefined> => {
    for (;;) {
      const frame = ready.shift();
      if (frame) return frame;
      if (ended) {
        expect(buffer.trim(), 'no incomplete frame at the end of the stream').toBe('');
        return undefined;
      }
      const { done, value } = await reader.read();
      const at = Date.now();
      if (done) {
        ended = true;
        continue;
      }
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        ready.push(parseFrame(buffer.slice(0, end), at));
        buffer = buffer.slice(end + 2);
      }
    }
  };
  return {
    next,
    async rest() {
      const all: Frame[] = [];
      for (let frame = await next(); frame; frame = await next()) all.push(frame);
      return all;
    },
  };
}

/** The frames of a body, as they arrive (see `frameReader`). */
export async function* sseFrames(response: Response): AsyncGenerator<Frame> {
  const reader = frameReader(response);
  for (let frame = await reader.next(); frame; frame = await reader.next()) yield frame;
}

/** The SSE response headers every streaming endpoint sends, and, when given, a 200 status. */
export function expectSseHeaders(headers: Headers | IncomingMessage['headers'], status?: number) {
  const get = (name: string) => (headers instanceof Headers ? headers.get(name) : (headers[name] as string | undefined) ?? null);
  if (status !== undefined) expect(status).toBe(200);
  expect(get('content-type')).toMatch(/^text\/event-stream/);
  expect(get('cache-control')).toMatch(/no-cache/);
  expect(get('x-accel-buffering')).toBe('no');
}

// ---------------------------------------------------------------------------------------------------------------
// A whole OpenAI-style stream, as text
// ---------------------------------------------------------------------------------------------------------------

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export interface ParsedStream {
  /** The content deltas, joined. */
  content: string;
  /** Every `finish_reason` that was set, in order. */
  finishReasons: string[];
  /** The `error` of every `data: {"error": ...}` event. */
  errors: unknown[];
  /** The last `data:` payload is `[DONE]`. */
  endsWithDone: boolean;
  /** The chunks (events that are not errors). */
  chunks: number;
  /** Lines that are neither `data:` frames, comments nor blank, and `data:` payloads that are not JSON. */
  junk: string[];
}

/**
 * Parses an OpenAI-style stream (`data: {chunk}` ... `data: [DONE]`) read to the end. A `data:` payload that is
 * not JSON is junk, or with `strict` throws, as JSON.parse does.
 */
export function parseSse(text: string, options: { strict?: boolean } = {}): ParsedStream {
  const parsed: ParsedStream = { content: '', finishReasons: [], errors: [], endsWithDone: false, chunks: 0, junk: [] };
  const data: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
    else if (line !== '' && !line.startsWith(':')) parsed.junk.push(line);
  }
  parsed.endsWithDone = data.at(-1) === '[DONE]';
  for (const payload of data) {
    if (payload === '[DONE]') continue;
    const event = (options.strict ? JSON.parse(payload) : safeJson(payload)) as any;
    if (event === undefined) {
      parsed.junk.push(payload);
      continue;
    }
    if (event.error) {
      parsed.errors.push(event.error);
      continue;
    }
    parsed.chunks++;
    for (const choice of event.choices ?? []) {
      if (typeof choice.delta?.content === 'string') parsed.content += choice.delta.content;
      if (choice.finish_reason) parsed.finishReasons.push(choice.finish_reason);
    }
  }
  return parsed;
}
