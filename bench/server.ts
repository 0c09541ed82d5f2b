/**
 * The server side of the benchmark, forked by bench/run.ts so its CPU and RSS are creditgate's own (not the load
 * generator's): creditgate built in-process exactly as src/main.ts builds it (the garbage collector's settings,
 * loadConfig, createLogger on stdout, createDeps, createApp) on 127.0.0.1; or, with `proxyOnly`, the minimal
 * pass-through proxy alone (its own process, so that its CPU and RSS are not mixed with an idle creditgate's
 * background work). Only the connection settings and the variant's own variables (bench/arms.ts, SERVER_VARIANTS)
 * are set: everything else, logging and the database pool included, is src/config.ts's default, as with `npm start`.
 * The bench points this process's stdout (where the logger writes, as in production) at a file. It answers the
 * parent's stats/gc/close requests over IPC.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import pg from 'pg';
import { createApp } from '../src/app.js';
import { createHttpServer } from '../src/http/server.js';
import { loadConfig } from '../src/config.js';
import { createDeps } from '../src/deps.js';
import { tuneGarbageCollector } from '../src/lib/gc-tuning.js';
import { createLogger } from '../src/lib/logger.js';

export interface ServerOptions {
  databaseUrl: string;
  upstreamBaseURL: string;
  masterKey: string;
  /** The variant's variables on top of the connection settings (e.g. LOG_LEVEL, DB_POOL_MAX, DB_GROUP_COMMIT). */
  env: Record<string, string>;
  /** Run the pass-through proxy alone, no creditgate. */
  proxyOnly?: boolean;
}

/** What the server's configuration ended up as (null: this version of creditgate does not read that variable). */
export interface EffectiveConfig {
  LOG_LEVEL: string;
  DB_POOL_MAX: number;
  DB_GROUP_COMMIT: boolean | null;
  EARLY_UPSTREAM_MIN_HOLDS: number;
}

export type ServerRequest = { id: number; cmd: 'stats' | 'resetPeak' | 'gc' | 'queries' | 'close' } | { id: number; cmd: 'heapSnapshot'; file: string };

/** Per SQL text: how many times it ran and the summed time until its promise settled. */
export type QueryCounts = Record<string, { n: number; ms: number }>;

export interface ServerStats {
  /** process.cpuUsage() in microseconds. */
  cpu: { user: number; system: number };
  rss: number;
  /** Highest RSS sampled (every 100 ms) since the last resetPeak. */
  peakRss: number;
  heapUsed: number;
  external: number;
  /** Every query creditgate sent to PostgreSQL (BEGIN and COMMIT included) and their summed latency. */
  dbQueries: number;
  dbQueryMs: number;
  /** Read and write system calls so far (Linux: syscr and syscw of /proc/self/io; 0 elsewhere). */
  syscalls: { reads: number; writes: number };
}

export type ServerMessage =
  | { type: 'ready'; creditgateUrl: string; proxyUrl: string; config: EffectiveConfig | null }
  | { type: 'reply'; id: number; stats?: ServerStats; queries?: QueryCounts; error?: string };

/** Syscalls are counted by the kernel, not sampled: they compare creditgate's socket work with the proxy's exactly. */
function syscallCounts(): ServerStats['syscalls'] {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const field = (name: string) => Number(io.match(new RegExp(`^${name}: (\\d+)$`, 'm'))?.[1] ?? 0);
    return { reads: field('syscr'), writes: field('syscw') };
  } catch {
    return { reads: 0, writes: 0 };
  }
}

const queryCounts = new Map<string, { n: number; ms: number }>();
/** Normalised SQL by raw text: drizzle sends the same few texts again and again. */
const queryKeys = new Map<string, string>();
const queryTotals = { n: 0, ms: 0 };

/**
 * Counts the database round trips: every pg query goes through Client.prototype.query (pool.query included).
 * Bench instrumentation only; it does not change what the query returns or throws.
 */
function countQueries(): void {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0] as string | { text?: string } | undefined;
    const raw = typeof first === 'string' ? first : (first?.text ?? '?');
    let key = queryKeys.get(raw);
    if (key === undefined) {
      key = raw.replace(/\s+/g, ' ').trim().slice(0, 120);
      if (queryKeys.size < 10_000) queryKeys.set(raw, key);
    }
    const entry = queryCounts.get(key) ?? { n: 0, ms: 0 };
    entry.n++;
    queryTotals.n++;
    queryCounts.set(key, entry);
    const started = performance.now();
    const done = () => {
      const ms = performance.now() - started;
      entry.ms += ms;
      queryTotals.ms += ms;
    };
    // pg-pool (drizzle's path) passes a callback; a direct client.query returns a promise.
    const callbackAt = args.findIndex((arg) => typeof arg === 'function');
    if (callbackAt >= 0) {
      const callback = args[callbackAt] as (...result: unknown[]) => unknown;
      args[callbackAt] = function (this: unknown, ...result: unknown[]) {
        done();
        return callback.apply(this, result);
      };
    }
    const result = original.apply(this, args);
    if (callbackAt < 0 && result && typeof (result as Promise<unknown>).then === 'function') (result as Promise<unknown>).then(done, done);
    return result;
  };
}

/** The floor: pipe the upstream's response to the client. No auth, no database, no parsing. */
function startPassThroughProxy(upstreamBaseURL: string): Promise<http.Server> {
  const upstream = new URL(upstreamBaseURL);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 });
  const server = http.createServer((req, res) => {
    const forward = http.request(
      { agent, host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    forward.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    res.on('close', () => res.writableFinished || forward.destroy());
    req.pipe(forward);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as ServerOptions;
  http.globalAgent.maxSockets = Infinity;
  countQueries();
  if (options.proxyOnly) {
    const proxy = await startPassThroughProxy(options.upstreamBaseURL);
    proxy.keepAliveTimeout = 60_000;
    serve([proxy], async () => undefined, { type: 'ready', creditgateUrl: '', proxyUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, config: null });
    return;
  }
  // As src/main.ts (the proxy, the floor, runs on Node's defaults).
  tuneGarbageCollector();
  const config = loadConfig({
    DATABASE_URL: options.databaseUrl,
    LLM_BASE_URL: options.upstreamBaseURL,
    MASTER_KEY: options.masterKey,
    HOST: '127.0.0.1',
    PORT: '0',
    // For comparing with the hold always written before the upstream is contacted (EARLY_UPSTREAM_MIN_HOLDS=0).
    ...(process.env.EARLY_UPSTREAM_MIN_HOLDS && { EARLY_UPSTREAM_MIN_HOLDS: process.env.EARLY_UPSTREAM_MIN_HOLDS }),
    ...options.env,
  });
  // As src/main.ts: pino on stdout (which the bench sends to a file).
  const deps = await createDeps(config, createLogger(config.LOG_LEVEL));
  const app = createHttpServer(createApp(deps), deps.config).listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => app.once('listening', resolve).once('error', reject));
  app.keepAliveTimeout = 60_000;
  serve([app], () => deps.close(), {
    type: 'ready',
    creditgateUrl: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    proxyUrl: '',
    config: {
      LOG_LEVEL: config.LOG_LEVEL,
      DB_POOL_MAX: config.DB_POOL_MAX,
      DB_GROUP_COMMIT: typeof (config as Record<string, unknown>).DB_GROUP_COMMIT === 'boolean' ? ((config as Record<string, unknown>).DB_GROUP_COMMIT as boolean) : null,
      EARLY_UPSTREAM_MIN_HOLDS: config.EARLY_UPSTREAM_MIN_HOLDS,
    },
  });
}

/** Answers the bench's requests over IPC for the given servers, then says it is ready. */
function serve(servers: http.Server[], closeDeps: () => Promise<unknown>, ready: ServerMessage & { type: 'ready' }): void {
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 100);
  sampler.unref();

  const stats = (): ServerStats => {
    const memory = process.memoryUsage();
    peakRss = Math.max(peakRss, memory.rss);
    return {
      cpu: process.cpuUsage(),
      rss: memory.rss,
      peakRss,
      heapUsed: memory.heapUsed,
      external: memory.external,
      dbQueries: queryTotals.n,
      dbQueryMs: queryTotals.ms,
      syscalls: syscallCounts(),
    };
  };
  const send = (message: ServerMessage) => process.send?.(message);

  const close = async () => {
    clearInterval(sampler);
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await closeDeps();
  };

  process.on('message', (raw) => {
    const message = raw as ServerRequest;
    void (async () => {
      try {
        switch (message.cmd) {
          case 'resetPeak':
            peakRss = process.memoryUsage.rss();
            break;
          case 'gc': {
            const gc = (globalThis as { gc?: () => void }).gc;
            for (let i = 0; i < 3; i++) {
              gc?.();
              await new Promise((resolve) => setImmediate(resolve));
            }
            break;
          }
          case 'close':
            await close();
            send({ type: 'reply', id: message.id, stats: stats() });
            // process.exit() lets --cpu-prof write its profile.
            setImmediate(() => process.exit(0));
            return;
          case 'queries': {
            // Returned and forgotten, so each phase sees its own.
            const queries: QueryCounts = Object.fromEntries(queryCounts);
            queryCounts.clear();
            send({ type: 'reply', id: message.id, stats: stats(), queries });
            return;
          }
          case 'heapSnapshot':
            writeHeapSnapshot(message.file);
            break;
          case 'stats':
            break;
        }
        send({ type: 'reply', id: message.id, stats: stats() });
      } catch (error) {
        send({ type: 'reply', id: message.id, error: String(error) });
      }
    })();
  });
  // The bench died: do not outlive it.
  process.on('disconnect', () => process.exit(1));

  send(ready);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench server failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
