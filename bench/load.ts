/**
 * The load generator: one streamed chat request at a time per worker (closed loop), over node:http with a
 * keep-alive agent, timing the first content chunk and the end of each stream. No dependency beyond Node.
 */
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** One kind of streamed request: where it goes and what a correct answer contains. */
export interface StreamTarget {
  url: string;
  headers: Record<string, string>;
  body: unknown;
  /** The concatenated content of a correct stream. */
  expectedContent: string;
}

export interface StreamResult {
  /** performance.now() when the request was issued. */
  startedAt: number;
  /** performance.now() when the stream ended (or failed). */
  endedAt: number;
  /** Time to the first `data:` chunk carrying non-empty content. */
  ttftMs?: number;
  totalMs: number;
  ok: boolean;
  error?: string;
  jobId?: string;
}

export interface StreamOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  onFirstToken?: () => void;
}

interface PreparedTarget {
  host: string;
  port: number;
  path: string;
  headers: Record<string, string | number>;
  body: string;
  expectedContent: string;
}

export function createClientAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096, scheduling: 'lifo' });
}

const prepared = new WeakMap<StreamTarget, PreparedTarget>();

function prepare(target: StreamTarget): PreparedTarget {
  let p = prepared.get(target);
  if (!p) {
    const url = new URL(target.url);
    const body = JSON.stringify(target.body);
    p = {
      host: url.hostname,
      port: Number(url.port),
      path: url.pathname + url.search,
      headers: { ...target.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      body,
      expectedContent: target.expectedContent,
    };
    prepared.set(target, p);
  }
  return p;
}

/** One streamed request, parsed as OpenAI SSE: it succeeds on HTTP 200, the expected content, no error and [DONE]. */
export function runStream(target: StreamTarget, agent: http.Agent, options: StreamOptions): Promise<StreamResult> {
  const p = prepare(target);
  return new Promise((resolve) => {
    const startedAt = performance.now();
    let settled = false;
    let ttftMs: number | undefined;
    let jobId: string | undefined;
    let content = '';
    let done = false;
    let inBandError = false;
    let malformed = false;

    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      const endedAt = performance.now();
      if (!error) {
        if (inBandError) error = 'in_band_error';
        else if (malformed) error = 'malformed_chunk';
        else if (!done) error = 'no_done';
        else if (content !== p.expectedContent) error = 'content_mismatch';
      }
      resolve({
        startedAt,
        endedAt,
        totalMs: endedAt - startedAt,
        ok: error === undefined,
        ...(ttftMs !== undefined && { ttftMs }),
        ...(error !== undefined && { error }),
        ...(jobId !== undefined && { jobId }),
      });
    };

    const handleEvent = (event: string) => {
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue; // comments (`: keepalive`) and other fields
        const payload = line.slice(line.charCodeAt(5) === 32 ? 6 : 5);
        if (payload === '[DONE]') {
          done = true;
          continue;
        }
        let chunk: any;
        try {
          chunk = JSON.parse(payload);
        } catch {
          malformed = true;
          continue;
        }
        if (chunk?.error) {
          inBandError = true;
          continue;
        }
        const text = chunk?.choices?.[0]?.delta?.content;
        if (typeof text === 'string' && text !== '') {
          if (ttftMs === undefined) {
            ttftMs = performance.now() - startedAt;
            options.onFirstToken?.();
          }
          content += text;
        }
      }
    };

    const req = http.request(
      { agent, host: p.host, port: p.port, path: p.path, method: 'POST', headers: p.headers },
      (res) => {
        const header = res.headers['x-job-id'];
        if (typeof header === 'string') jobId = header;
        if (res.statusCode !== 200) {
          res.resume();
          res.on('end', () => finish(`http_${res.statusCode}`));
          res.on('error', () => finish(`http_${res.statusCode}`));
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let index: number;
          while ((index = buffer.indexOf('\n\n')) !== -1) {
            const event = buffer.slice(0, index);
            buffer = buffer.slice(index + 2);
            handleEvent(event);
          }
        });
        res.on('end', () => finish());
        res.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? 'response_error'));
        res.on('close', () => finish(res.complete ? undefined : 'connection_closed'));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => finish(settled ? undefined : (error.code ?? error.message)));
    const timer = setTimeout(() => {
      finish('timeout');
      req.destroy();
    }, options.timeoutMs);
    const onAbort = () => {
      finish('aborted');
      req.destroy();
    };
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    req.end(p.body);
  });
}

export interface LevelPlan {
  concurrency: number;
  /** Workers' first starts are spread evenly over this; nothing started in it is measured. */
  rampMs: number;
  /** The measured window after the ramp. */
  measureMs: number;
  streamTimeoutMs: number;
}

export interface Percentiles {
  p50: number;
  p99: number;
  /** With fewer than 1,000 samples this is the largest of them. */
  p999: number;
  mean: number;
  max: number;
}

export interface LevelResult {
  concurrency: number;
  measureMs: number;
  /** Streams ending successfully inside the measured window, per second. */
  okPerSecond: number;
  started: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  /** Successful streams started inside the measured window. */
  samples: number;
  ttft: Percentiles;
  total: Percentiles;
  /** Job ids (X-Job-Id) of every stream of the phase, successful or not. */
  okJobIds: string[];
  failedJobIds: string[];
  wallMs: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

function summarise(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const list = Array.from(sorted);
  const sum = list.reduce((a, b) => a + b, 0);
  return { p50: percentile(list, 50), p99: percentile(list, 99), p999: percentile(list, 99.9), mean: list.length ? sum / list.length : NaN, max: list.at(-1) ?? NaN };
}

/**
 * Closed loop: `concurrency` workers each start their next stream when the previous one ends. Their first
 * starts are staggered evenly over the ramp, so streams start at a steady pace. Workers stop starting streams
 * at the end of the window and wait for the ones in flight (each bounded by streamTimeoutMs).
 */
export async function runClosedLoop(targets: StreamTarget[], agent: http.Agent, plan: LevelPlan): Promise<LevelResult> {
  const results: StreamResult[] = [];
  const phaseStart = performance.now();
  const measureStart = phaseStart + plan.rampMs;
  const deadline = measureStart + plan.measureMs;
  const worker = async (index: number) => {
    const target = targets[index % targets.length] as StreamTarget;
    await sleep((index * plan.rampMs) / plan.concurrency);
    while (performance.now() < deadline) {
      const result = await runStream(target, agent, { timeoutMs: plan.streamTimeoutMs });
      results.push(result);
      // A failing target answers at once; do not spin on it.
      if (!result.ok) await sleep(10);
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, (_, i) => worker(i)));
  const wallMs = performance.now() - phaseStart;

  const measured = results.filter((r) => r.ok && r.startedAt >= measureStart);
  const okInWindow = results.filter((r) => r.ok && r.endedAt >= measureStart && r.endedAt < deadline).length;
  const errorKinds: Record<string, number> = {};
  for (const r of results) if (!r.ok) errorKinds[r.error ?? 'unknown'] = (errorKinds[r.error ?? 'unknown'] ?? 0) + 1;
  const ok = results.filter((r) => r.ok);
  return {
    concurrency: plan.concurrency,
    measureMs: plan.measureMs,
    okPerSecond: okInWindow / (plan.measureMs / 1000),
    started: results.length,
    ok: ok.length,
    errors: results.length - ok.length,
    errorKinds,
    samples: measured.length,
    ttft: summarise(measured.map((r) => r.ttftMs ?? NaN)),
    total: summarise(measured.map((r) => r.totalMs)),
    okJobIds: ok.flatMap((r) => (r.jobId ? [r.jobId] : [])),
    failedJobIds: results.flatMap((r) => (!r.ok && r.jobId ? [r.jobId] : [])),
    wallMs,
  };
}

export interface OpenStreams {
  /** Streams that delivered their first content chunk. */
  opened: number;
  failed: number;
  errorKinds: Record<string, number>;
  jobIds: string[];
  /** Aborts every stream and resolves once all have ended. */
  close(): Promise<void>;
}

/**
 * Opens `count` streams at a steady pace over `paceMs` (slower if more than `maxPending` are still waiting for
 * their first chunk, so the server is never asked to create more at once than it can) and resolves when every one
 * has either delivered its first content chunk or failed (or at `waitMs`). The streams stay open until close().
 */
export async function openHeldStreams(
  targets: StreamTarget[],
  agent: http.Agent,
  count: number,
  paceMs: number,
  waitMs: number,
  maxPending = 32,
): Promise<OpenStreams> {
  const giveUpAt = performance.now() + waitMs;
  const controller = new AbortController();
  // Every held stream listens on this one signal.
  setMaxListeners(count + 10, controller.signal);
  const state = { opened: 0, failed: 0, errorKinds: {} as Record<string, number>, jobIds: [] as string[] };
  let notify: () => void = () => undefined;
  const pending: Promise<StreamResult>[] = [];
  const allSettled = () => state.opened + state.failed >= count;
  const waitUntil = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(finish, Math.max(0, giveUpAt - performance.now()));
      function finish() {
        clearTimeout(timer);
        notify = () => undefined;
        resolve();
      }
      notify = () => done() && finish();
      notify();
    });
  for (let i = 0; i < count && performance.now() < giveUpAt; i++) {
    if (i - state.opened - state.failed >= maxPending) await waitUntil(() => i - state.opened - state.failed < maxPending);
    const stream = runStream(targets[i % targets.length] as StreamTarget, agent, {
      timeoutMs: waitMs + 120_000,
      signal: controller.signal,
      onFirstToken: () => {
        state.opened++;
        notify();
      },
    }).then((result) => {
      if (result.jobId) state.jobIds.push(result.jobId);
      if (result.ttftMs === undefined && result.error !== 'aborted') {
        state.failed++;
        state.errorKinds[result.error ?? 'unknown'] = (state.errorKinds[result.error ?? 'unknown'] ?? 0) + 1;
        notify();
      }
      return result;
    });
    pending.push(stream);
    if (i < count - 1) await sleep(paceMs / count);
  }
  await waitUntil(allSettled);
  return {
    get opened() {
      return state.opened;
    },
    get failed() {
      return state.failed;
    },
    errorKinds: state.errorKinds,
    jobIds: state.jobIds,
    async close() {
      controller.abort();
      await Promise.all(pending);
    },
  };
}
