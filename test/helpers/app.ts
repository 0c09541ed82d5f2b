import { createServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { inject } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createDeps, type Deps } from '../../src/deps.js';
import { createHttpServer } from '../../src/http/server.js';
import { shutDownGracefully } from '../../src/http/shutdown.js';
import { createLogger } from '../../src/lib/logger.js';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { closeSharedPool, createDatabaseFromTemplate } from './postgres.js';

export const TEST_MASTER_KEY = 'mk-test-master-key-0123456789';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface RequestOptions {
  token?: string | null;
  body?: unknown;
  /** Sent as-is instead of JSON-encoding `body`. */
  rawBody?: string;
  headers?: Record<string, string>;
}

/**
 * A JSON request to `baseUrl + path`: `token` (default `defaultToken`, `null` for none) as the bearer credential,
 * `body` JSON-encoded (or `rawBody` as is); a JSON answer is parsed, any other is returned as text.
 */
export async function jsonRequest<T = any>(
  baseUrl: string,
  defaultToken: string,
  method: string,
  path: string,
  options: RequestOptions & { timeoutMs?: number } = {},
): Promise<ApiResponse<T>> {
  const token = options.token === undefined ? defaultToken : options.token;
  const headers: Record<string, string> = { ...options.headers };
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined = options.rawBody;
  if (body === undefined && options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  const response = await fetch(baseUrl + path, {
    method,
    headers,
    ...(body !== undefined && { body }),
    ...(options.timeoutMs !== undefined && { signal: AbortSignal.timeout(options.timeoutMs) }),
  });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json');
  return { status: response.status, headers: response.headers, body: isJson && text ? JSON.parse(text) : text };
}

/** A free TCP port on 127.0.0.1 (nothing listens on it once this resolves). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export interface TestApp {
  url: string;
  deps: Deps;
  upstream: SimulatedUpstream;
  databaseUrl: string;
  /** JSON request; the master key is the default credential. */
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<ApiResponse<T>>;
  /** What SIGTERM does (shutDownGracefully); the database stays, for the test to read, until close(). */
  stopGracefully(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the real app in-process on port 0, against a fresh database and a scriptable upstream. `logLine`
 * receives each JSON line the app logs (give `LOG_LEVEL` too; tests default to silent).
 */
export async function createTestApp(env: Record<string, string> = {}, options: { logLine?: (line: string) => void } = {}): Promise<TestApp> {
  const database = await createDatabaseFromTemplate(inject('postgresServerUrl'), inject('postgresTemplate'));
  const upstream = await startSimulatedUpstream();
  const config = loadConfig({
    DATABASE_URL: database.url,
    LLM_BASE_URL: upstream.baseURL,
    MASTER_KEY: TEST_MASTER_KEY,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DB_POOL_MAX: '30',
    ...env,
  });
  const logLine = options.logLine;
  const deps = await createDeps(config, createLogger(config.LOG_LEVEL, logLine && { write: (line: string) => logLine(line) }));
  const server: Server = createHttpServer(createApp(deps), deps.config).listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let stopped: Promise<void> | undefined;

  return {
    url,
    deps,
    upstream,
    databaseUrl: database.url,
    request: (method, path, options) => jsonRequest(url, TEST_MASTER_KEY, method, path, options),
    async stopGracefully() {
      stopped ??= shutDownGracefully(server, deps);
      await stopped;
    },
    async close() {
      if (!stopped) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await deps.close();
      }
      await stopped;
      await upstream.close();
      await closeSharedPool(database.url);
      await database.drop();
    },
  };
}
