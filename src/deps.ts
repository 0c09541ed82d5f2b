import type pg from 'pg';
import type Stripe from 'stripe';
import { connectDatabase, migrateDatabase, openConnections, type Database } from './db/client.js';
import { startEmbeddedPostgres } from './db/embedded-postgres.js';
import { GroupCommit } from './db/group-commit.js';
import type { Actor } from './domain/actor.js';
import type { AdminAuth } from './domain/admin/admin-auth.js';
import type { ServiceContext } from './domain/context.js';
import { loadAdminSecrets } from './domain/admin/instance-secrets.js';
import { LoginGuard } from './domain/admin/login-guard.js';
import { RefillCharger } from './domain/billing/stripe/refill-charger.js';
import { createStripeClient } from './domain/billing/stripe/stripe-client.js';
import { startJobSweeper } from './domain/jobs/job-sweeper.js';
import { RateLimiter } from './domain/limits/rate-limiter.js';
import { startLowBalanceMonitor } from './domain/ledger/low-balance.js';
import { SecretBox } from './lib/secret-box.js';
import { WebhookDispatcher } from './domain/webhooks/webhook-dispatcher.js';
import { CallLeases } from './domain/llm/call-leases.js';
import { loadTokenizer } from './domain/llm/token-estimate.js';
import { CANCEL_CHANNEL, InflightCalls } from './domain/llm/inflight-calls.js';
import { PgNotifier } from './db/notifier.js';
import { QueueRuns } from './domain/queue/queue-runs.js';
import { CACHE_CHANNEL, Caches } from './domain/caches.js';
import type { Config } from './config.js';
import { createMetrics, observeServices, type HttpMetrics } from './http/metrics.js';
import type { Logger } from './lib/logger.js';
import { UpstreamClient } from './upstream/client.js';
import { startSimulatedUpstream } from './upstream/simulated-server.js';

export interface Deps {
  config: Config;
  log: Logger;
  db: Database;
  pool: pg.Pool;
  adminAuth: AdminAuth;
  metrics: HttpMetrics;
  upstream: UpstreamClient;
  inflight: InflightCalls;
  leases: CallLeases;
  limiter: RateLimiter;
  /** Seals what must be read back but not read from the database: webhook secrets, answers holding a secret. */
  secretBox: SecretBox;
  webhooks: { dispatcher: WebhookDispatcher };
  queue: QueueRuns;
  caches: Caches;
  /** Batches the hot statements of concurrent jobs (DB_GROUP_COMMIT); undefined when off. */
  groupCommit: GroupCommit | undefined;
  /** Stripe's API, when STRIPE_SECRET_KEY is set. */
  stripe: Stripe | undefined;
  /** Set on the one start that generated the master key. */
  generatedMasterKey?: string;
  close(): Promise<void>;
}

/** The context a domain function runs in for `actor`: a request's (with its own id and logger), or a script's. */
export function serviceContext(deps: Deps, actor: Actor, requestId: string, log: Logger = deps.log): ServiceContext {
  const { db, config, upstream, inflight, leases, limiter, queue, caches } = deps;
  return { db, actor, requestId, log, config, upstream, inflight, leases, limiter, queue, caches };
}

/**
 * The composition root. Real parts everywhere: an embedded PostgreSQL when no DATABASE_URL is given and the
 * built-in simulated upstream (a real HTTP server) when no LLM_BASE_URL is given.
 */
export async function createDeps(config: Config, log: Logger): Promise<Deps> {
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch((error) => log.error({ err: error }, 'shutdown step failed'));
  };
  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      const embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, persistent: true });
      closers.push(embedded.stop);
      databaseUrl = embedded.url;
      log.info({ data_dir: config.DATA_DIR, port: embedded.port }, 'using embedded PostgreSQL (set DATABASE_URL to use your own)');
    }
    // DATABASE_URL may go through a transaction pooler; what needs a session of its own (the migrations' advisory
    // lock, LISTEN) uses the direct connection.
    const directUrl = config.DATABASE_DIRECT_URL ?? databaseUrl;
    const database = connectDatabase(databaseUrl, {
      max: config.DB_POOL_MAX,
      min: config.DB_POOL_MIN,
      idleTimeoutMs: config.DB_POOL_IDLE_TIMEOUT_MS,
      preparedStatements: config.DB_PREPARED_STATEMENTS,
      queryTimeoutMs: config.DB_QUERY_TIMEOUT_MS,
      connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
    });
    closers.push(database.close);
    await Promise.all([migrateOver(directUrl), loadTokenizer(), openConnections(database.pool, config.DB_POOL_MIN)]);
    const groupCommit = config.DB_GROUP_COMMIT ? await GroupCommit.install(database.pool, database.db, log) : undefined;

    let upstream = { baseURL: config.LLM_BASE_URL ?? '', apiKey: config.LLM_API_KEY ?? 'unused' };
    if (!config.LLM_BASE_URL) {
      const simulated = await startSimulatedUpstream({ chunkDelayMs: 20, firstTokenDelayMs: 150 });
      closers.push(simulated.close);
      upstream = { baseURL: simulated.baseURL, apiKey: 'unused' };
      log.info({ base_url: simulated.baseURL }, 'using the built-in simulated upstream (set LLM_BASE_URL for a real one)');
    }

    const notifier = new PgNotifier(directUrl, database.pool, log, { timeoutMs: config.DB_QUERY_TIMEOUT_MS, connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS });
    const inflight = new InflightCalls((key) => notifier.publish(CANCEL_CHANNEL, key));
    notifier.on(CANCEL_CHANNEL, (key) => inflight.abortHere(key));
    const caches = new Caches(config.CACHE_TTL_MS, { publish: (message) => notifier.publish(CACHE_CHANNEL, message), countListeners: () => notifier.countListeners() });
    notifier.on(CACHE_CHANNEL, (message) => caches.receive(message));
    notifier.onReconnect(() => caches.dropAll());
    const stopKeepingWarm = caches.keepWarm();
    closers.push(async () => stopKeepingWarm());
    await notifier.start();
    closers.push(() => notifier.stop());

    const leases = new CallLeases(database.db, config.CALL_LEASE_SECONDS, log);
    leases.start();
    closers.push(async () => leases.stop());

    const stopSweeper = startJobSweeper(database.db, { leaseSeconds: config.CALL_LEASE_SECONDS, intervalSeconds: config.SWEEP_INTERVAL_SECONDS }, log);
    closers.push(stopSweeper);

    const upstreamClient = new UpstreamClient({ ...upstream, timeoutMs: config.UPSTREAM_TIMEOUT_MS });
    closers.push(async () => upstreamClient.close());

    const secrets = await loadAdminSecrets(database.db, { masterKey: config.MASTER_KEY, jwtSecret: config.JWT_SECRET, dataDir: config.DATA_DIR });
    log.info({ jwt_secret: secrets.jwtSecretSource }, 'admin JWT signing key loaded (never stored in the database)');
    const box = new SecretBox(secrets.jwtSecret);
    const dispatcher = new WebhookDispatcher(
      database.db,
      box,
      {
        pollMs: config.WEBHOOK_POLL_MS,
        timeoutMs: config.WEBHOOK_TIMEOUT_MS,
        maxAgeMs: config.WEBHOOK_MAX_AGE_HOURS * 3_600_000,
        retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
        retentionMs: config.WEBHOOK_RETENTION_DAYS * 86_400_000,
      },
      log,
    );
    dispatcher.start();
    closers.push(() => dispatcher.stop());
    closers.push(startLowBalanceMonitor(database.db, config.LOW_BALANCE_CHECK_MS, log));
    const stripe = createStripeClient(config);
    // A refill's credits are granted when Stripe's webhook confirms its payment: without the webhook, none is charged.
    if (stripe && config.STRIPE_WEBHOOK_SECRET) {
      const charger = new RefillCharger(database.db, stripe, config, log);
      charger.start();
      closers.push(() => charger.stop());
    } else if (stripe) {
      log.warn('auto-refills are not charged: STRIPE_WEBHOOK_SECRET is unset, so their payments could not be granted');
    }
    const metrics = createMetrics();
    const limiter = new RateLimiter(database.db, log);
    const queue = new QueueRuns({ itemBytes: config.QUEUE_ITEM_BUFFER_BYTES, totalBytes: config.QUEUE_BUFFER_BYTES, lingerMs: config.QUEUE_LINGER_MS });
    observeServices(metrics.registry, { claims: () => limiter.claims, callsInFlight: () => leases.count, queueKeptBytes: () => queue.keptBytes });
    return {
      config,
      log,
      db: database.db,
      pool: database.pool,
      adminAuth: { secrets, tokenTtlSeconds: config.JWT_TTL_SECONDS, logins: new LoginGuard() },
      metrics,
      upstream: upstreamClient,
      inflight,
      leases,
      limiter,
      secretBox: box,
      webhooks: { dispatcher },
      queue,
      caches,
      groupCommit,
      stripe,
      ...(secrets.generatedMasterKey && { generatedMasterKey: secrets.generatedMasterKey }),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

async function migrateOver(url: string): Promise<void> {
  const migrations = connectDatabase(url, { max: 1, applicationName: 'creditgate-migrations' });
  try {
    await migrateDatabase(migrations.pool);
  } finally {
    await migrations.close();
  }
}
