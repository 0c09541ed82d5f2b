import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type ScriptStep =
  | { type: 'content'; text: string; delayMs?: number }
  | { type: 'tool_call'; index: number; id?: string; name?: string; arguments?: string; delayMs?: number }
  | { type: 'finish'; reason: 'stop' | 'length' | 'tool_calls' | 'content_filter'; delayMs?: number }
  | { type: 'raw'; line: string; delayMs?: number }
  | { type: 'error'; message: string; code?: string; delayMs?: number }
  | { type: 'destroy'; delayMs?: number }
  | { type: 'hang' };

export interface UpstreamScript {
  status?: number;
  errorMessage?: string;
  headersDelayMs?: number;
  steps?: ScriptStep[];
  usage?: { prompt_tokens: number; completion_tokens: number } | 'none';
  model?: string;
}

export interface RecordedRequest {
  id: number;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  startedAt: number;
  finishedAt?: number;
  closedAt?: number;
  abortedByClient: boolean;
}

export type Responder = (request: RecordedRequest) => UpstreamScript;

export interface SimulatedUpstream {
  url: string;
  baseURL: string;
  requests: RecordedRequest[];
  setResponder(responder: Responder | undefined): void;
  enqueue(...scripts: UpstreamScript[]): void;
  waitForRequests(count: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  waitForClosed(requestId: number, timeoutMs?: number): Promise<RecordedRequest>;
  openStreams(): number;
  close(): Promise<void>;
}

export interface SimulatedUpstreamOptions {
  port?: number;
  host?: string;
  chunkDelayMs?: number;
  firstTokenDelayMs?: number;
  apiKey?: string;
  responder?: Responder;
  /** Serve HTTPS with this PEM key and certificate, as a hosted provider or a LiteLLM behind TLS does. */
  tls?: { key: string; cert: string };
}

export const SIMULATED_MODELS: string[] = ['sim-small', 'sim-large', 'gpt-4o-mini', 'gpt-4o', 'claude-3-5-sonnet'];

type FinishReason = Extract<ScriptStep, { type: 'finish' }>['reason'];
type ToolCallStep = Extract<ScriptStep, { type: 'tool_call' }>;
interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

const DEFAULT_WAIT_MS = 5_000;
const REPLY_TAIL = 'This answer comes from the creditgate simulated upstream. No real model was called.';
const WEATHER_ARGUMENT_PIECES = ['{"location":', '"Paris"}'];

function errorType(status: number): string {
  if (status >= 500) return 'server_error';
  return status === 429 ? 'requests' : 'invalid_request_error';
}

function defaultErrorCode(status: number): string | null {
  if (status === 401) return 'invalid_api_key';
  return status === 429 ? 'rate_limit_exceeded' : null;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string, code = defaultErrorCode(status)): void {
  sendJson(res, status, { error: { message, type: errorType(status), param: null, code } });
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (typeof part?.text === 'string' ? part.text : '')).join('');
}

function messagesOf(body: any): any[] {
  return Array.isArray(body?.messages) ? body.messages : [];
}

function maxTokensOf(body: any): number | undefined {
  const limit = body?.max_completion_tokens ?? body?.max_tokens;
  return Number.isInteger(limit) && limit > 0 ? limit : undefined;
}

function createDefaultResponder(firstTokenDelayMs: number, chunkDelayMs: number): Responder {
  const delayAt = (position: number) => (position === 0 ? firstTokenDelayMs : chunkDelayMs);
  return (request) => {
    const lastUserText = textOf(messagesOf(request.body).findLast((m) => m?.role === 'user')?.content);
    const toolName = request.body?.tools?.[0]?.function?.name;

    if (typeof toolName === 'string' && /\bweather\b/i.test(lastUserText)) {
      const pieces = ['', ...WEATHER_ARGUMENT_PIECES];
      const steps = pieces.map((piece, i): ScriptStep => ({
        type: 'tool_call',
        index: 0,
        ...(i === 0 ? { id: `call_sim_${request.id}`, name: toolName } : {}),
        arguments: piece,
        delayMs: delayAt(i),
      }));
      return { steps: [...steps, { type: 'finish', reason: 'tool_calls' }] };
    }

    const reply = `Simulated reply to: "${lastUserText.slice(0, 200)}". ${REPLY_TAIL}`;
    // Each chunk is one word plus its trailing whitespace, so the chunks concatenate back to `reply`.
    const words = reply.match(/\S+\s*/g) ?? [];
    const emitted = words.slice(0, maxTokensOf(request.body) ?? words.length);
    const steps = emitted.map((text, i): ScriptStep => ({ type: 'content', text, delayMs: delayAt(i) }));
    return { steps: [...steps, { type: 'finish', reason: emitted.length < words.length ? 'length' : 'stop' }] };
  };
}

function withFinish(steps: ScriptStep[]): ScriptStep[] {
  const ended = steps.some((s) => s.type === 'finish' || s.type === 'error' || s.type === 'destroy' || s.type === 'hang');
  if (ended) return steps;
  const reason = steps.some((s) => s.type === 'tool_call') ? 'tool_calls' : 'stop';
  return [...steps, { type: 'finish', reason }];
}

function resolveUsage(script: UpstreamScript, body: any, steps: ScriptStep[]): Usage | undefined {
  if (script.usage === 'none') return undefined;
  if (script.usage) return { ...script.usage, total_tokens: script.usage.prompt_tokens + script.usage.completion_tokens };
  const promptChars = messagesOf(body).reduce((sum: number, m) => sum + textOf(m?.content).length, 0);
  const toolCalls = new Set(steps.flatMap((s) => (s.type === 'tool_call' ? [s.index] : []))).size;
  const prompt_tokens = Math.max(1, Math.ceil(promptChars / 4));
  const completion_tokens = steps.filter((s) => s.type === 'content').length + 10 * toolCalls;
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

function toolCallDelta(step: ToolCallStep) {
  return {
    index: step.index,
    ...(step.id !== undefined ? { id: step.id, type: 'function' } : {}),
    function: {
      ...(step.name !== undefined ? { name: step.name } : {}),
      ...(step.arguments !== undefined ? { arguments: step.arguments } : {}),
    },
  };
}

async function write(res: ServerResponse, data: string, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  // Respect TCP backpressure so a slow reader cannot make this server buffer the whole reply.
  if (!res.write(data)) await once(res, 'drain', { signal });
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

async function pause(ms: number | undefined, signal: AbortSignal): Promise<void> {
  if (ms) await sleep(ms, undefined, { signal });
}

interface Exchange {
  res: ServerResponse;
  signal: AbortSignal;
  body: any;
  steps: ScriptStep[];
  model: string;
  usage: Usage | undefined;
  destroy(): void;
}

async function streamCompletion({ res, signal, body, steps, model, usage, destroy }: Exchange): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  res.flushHeaders();

  const includeUsage = body.stream_options?.include_usage === true;
  const base = {
    id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: null,
  };
  const send = (data: unknown) => write(res, `data: ${JSON.stringify(data)}\n\n`, signal);
  const chunk = (delta: object, finishReason: FinishReason | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  });
  let roleSent = false;
  // The role chunk goes out together with the first real chunk, so a script can delay or withhold the first byte.
  const sendChoice = async (delta: object, finishReason: FinishReason | null = null) => {
    if (!roleSent) {
      roleSent = true;
      await send(chunk({ role: 'assistant', content: '' }, null));
    }
    await send(chunk(delta, finishReason));
  };

  for (const step of steps) {
    if (step.type === 'hang') return untilAborted(signal);
    await pause(step.delayMs, signal);
    switch (step.type) {
      case 'content':
        await sendChoice({ content: step.text });
        break;
      case 'tool_call':
        await sendChoice({ tool_calls: [toolCallDelta(step)] });
        break;
      case 'finish':
        await sendChoice({}, step.reason);
        break;
      case 'raw':
        await write(res, `${step.line}\n\n`, signal);
        break;
      case 'error':
        // Like LiteLLM: an in-band error event, then a clean end without [DONE].
        await send({ error: { message: step.message, type: 'server_error', code: step.code ?? null } });
        res.end();
        return;
      case 'destroy':
        destroy();
        return;
    }
  }
  if (includeUsage && usage) await send({ ...base, choices: [], usage });
  await write(res, 'data: [DONE]\n\n', signal);
  res.end();
}

async function completeAtOnce({ res, signal, steps, model, usage, destroy }: Exchange): Promise<void> {
  let delayMs = 0;
  let content = '';
  let finishReason: FinishReason = 'stop';
  const toolCalls = new Map<number, { id: string; type: 'function'; function: { name: string; arguments: string } }>();

  for (const step of steps) {
    if (step.type === 'hang') return untilAborted(signal);
    delayMs += step.delayMs ?? 0;
    if (step.type === 'error' || step.type === 'destroy') {
      await pause(delayMs, signal);
      if (step.type === 'error') sendError(res, 500, step.message, step.code ?? null);
      else destroy();
      return;
    }
    if (step.type === 'content') content += step.text;
    if (step.type === 'finish') finishReason = step.reason;
    if (step.type === 'tool_call') {
      const call = toolCalls.get(step.index) ?? { id: '', type: 'function', function: { name: '', arguments: '' } };
      call.id ||= step.id ?? '';
      call.function.name += step.name ?? '';
      call.function.arguments += step.arguments ?? '';
      toolCalls.set(step.index, call);
    }
  }
  await pause(delayMs, signal);

  const calls = [...toolCalls.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
  const message = {
    role: 'assistant',
    content: content === '' && calls.length > 0 ? null : content,
    refusal: null,
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
  };
  sendJson(res, 200, {
    id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason }],
    ...(usage ? { usage } : {}),
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJsonObject(text: string): object | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export async function startSimulatedUpstream(options: SimulatedUpstreamOptions = {}): Promise<SimulatedUpstream> {
  const { port = 0, host = '127.0.0.1', chunkDelayMs = 0, firstTokenDelayMs = 0, apiKey } = options;
  const defaultResponder = createDefaultResponder(firstTokenDelayMs, chunkDelayMs);
  let responder = options.responder ?? defaultResponder;
  const queue: UpstreamScript[] = [];
  const requests: RecordedRequest[] = [];
  const listeners = new Set<() => void>();
  let open = 0;
  let closing = false;

  const notify = () => listeners.forEach((listener) => listener());

  function waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const value = check();
        if (value === undefined) return;
        cleanup();
        resolve(value);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(attempt);
      };
      listeners.add(attempt);
      attempt();
    });
  }

  async function handleChat(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const controller = new AbortController();
    let record: RecordedRequest | undefined;
    let destroyedByServer = false;
    res.on('close', () => {
      controller.abort();
      if (!record) return;
      record.closedAt = Date.now();
      record.abortedByClient = !res.writableFinished && !destroyedByServer && !closing;
      open--;
      notify();
    });

    try {
      const body = parseJsonObject(await readBody(req));
      if (controller.signal.aborted) return;
      if (!body) return sendError(res, 400, 'We could not parse the JSON body of your request.');

      const current: RecordedRequest = {
        id: requests.length + 1,
        path,
        headers: { ...req.headers },
        body,
        startedAt: Date.now(),
        abortedByClient: false,
      };
      record = current;
      res.on('finish', () => {
        current.finishedAt = Date.now();
      });
      requests.push(current);
      open++;
      notify();

      const script = queue.shift() ?? responder(current);
      const steps = withFinish(script.steps ?? defaultResponder(current).steps ?? []);
      await pause(script.headersDelayMs, controller.signal);
      if (script.status !== undefined && (script.status < 200 || script.status >= 300)) {
        return sendError(res, script.status, script.errorMessage ?? `Simulated upstream error (HTTP ${script.status})`);
      }

      const exchange: Exchange = {
        res,
        signal: controller.signal,
        body: current.body,
        steps,
        model: script.model ?? (typeof current.body.model === 'string' ? current.body.model : 'sim-small'),
        usage: resolveUsage(script, current.body, steps),
        destroy: () => {
          destroyedByServer = true;
          req.socket.resetAndDestroy();
        },
      };
      await (current.body.stream === true ? streamCompletion(exchange) : completeAtOnce(exchange));
    } catch (error) {
      if (controller.signal.aborted) return;
      if (res.headersSent) res.destroy();
      else sendError(res, 500, `Simulated upstream failure: ${String(error)}`);
    }
  }

  const handle: RequestListener = (req, res) => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (apiKey !== undefined && req.headers.authorization !== `Bearer ${apiKey}`) {
      return sendError(res, 401, 'Incorrect API key provided.');
    }
    if (method === 'POST' && (path === '/v1/chat/completions' || path === '/chat/completions')) {
      return void handleChat(req, res, path);
    }
    if (method === 'GET' && (path === '/v1/models' || path === '/models')) {
      const created = Math.floor(Date.now() / 1000);
      const data = SIMULATED_MODELS.map((id) => ({ id, object: 'model', created, owned_by: 'creditgate-sim' }));
      return sendJson(res, 200, { object: 'list', data });
    }
    sendError(res, 404, `Invalid URL (${method} ${path})`);
  };

  const server = options.tls ? createTlsServer(options.tls, handle) : createServer(handle);
  server.listen(port, host);
  await once(server, 'listening');
  const url = `${options.tls ? 'https' : 'http'}://${host}:${(server.address() as AddressInfo).port}`;

  return {
    url,
    baseURL: `${url}/v1`,
    requests,
    setResponder: (next) => {
      responder = next ?? defaultResponder;
    },
    enqueue: (...scripts) => {
      queue.push(...scripts);
    },
    waitForRequests: (count, timeoutMs = DEFAULT_WAIT_MS) =>
      waitFor(() => (requests.length >= count ? requests.slice(0, count) : undefined), timeoutMs, `${count} requests`),
    waitForClosed: (requestId, timeoutMs = DEFAULT_WAIT_MS) =>
      waitFor(
        () => requests.find((r) => r.id === requestId && r.closedAt !== undefined),
        timeoutMs,
        `request ${requestId} to close`,
      ),
    openStreams: () => open,
    close: () =>
      new Promise<void>((resolve, reject) => {
        closing = true;
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
