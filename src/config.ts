import { z } from 'zod';

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const durationMs = (fallback: number, description: string) =>
  z.coerce.number().int().min(1).default(fallback).describe(description);

export const ConfigSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8003).describe('HTTP port'),
  HOST: z.string().default('0.0.0.0').describe('interface to listen on'),
  DATABASE_URL: optionalString
    .pipe(z.url({ protocol: /^postgres(ql)?$/ }).optional())
    .describe('PostgreSQL connection string; unset starts an embedded PostgreSQL under DATA_DIR'),
  DATABASE_DIRECT_URL: optionalString
    .pipe(z.url({ protocol: /^postgres(ql)?$/ }).optional())
    .describe(
      'a session (direct) connection to the same database, for LISTEN and migrations (its advisory lock), when DATABASE_URL goes through a transaction pooler such as PgBouncer; unset: DATABASE_URL',
    ),
  DATA_DIR: z.string().default('./.data').describe('where the embedded database lives'),
  LLM_BASE_URL: optionalString
    .pipe(z.url({ protocol: /^https?$/ }).optional())
    .describe('OpenAI/LiteLLM-compatible base URL; unset starts the built-in simulated upstream'),
  LLM_API_KEY: optionalString.describe('key sent to the upstream'),
  MASTER_KEY: optionalString
    .pipe(z.string().min(16).optional())
    .describe('admin bearer credential; unset generates one on first start and prints it once'),
  JWT_SECRET: optionalString
    .pipe(z.string().min(32).optional())
    .describe('secret that signs admin JWTs; unset generates and persists one on first start'),
  JWT_TTL_SECONDS: z.coerce.number().int().min(60).default(3600).describe('lifetime of admin JWTs'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('pino log level'),
  BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)$/i).default('1mb').describe('largest accepted JSON body'),
  DB_POOL_MAX: z.coerce.number().int().min(1).max(500).default(20).describe('PostgreSQL pool size'),
  DB_POOL_MIN: z.coerce
    .number()
    .int()
    .min(0)
    .max(500)
    .default(4)
    .describe('PostgreSQL connections opened at start and kept open however idle (at most DB_POOL_MAX), so a burst after a quiet spell does not wait for new connections'),
  DB_POOL_IDLE_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(60_000)
    .describe('how long a PostgreSQL connection beyond DB_POOL_MIN may stay idle before it is closed'),
  DB_PREPARED_STATEMENTS: z
    .stringbool()
    .default(true)
    .describe(
      'run the hot statements as named prepared statements (parsed and planned once per connection); false for a transaction pooler without prepared statement support (PgBouncer before 1.21, or without max_prepared_statements)',
    ),
  DB_GROUP_COMMIT: z
    .stringbool()
    .default(true)
    .describe(
      'batch the hold and settle statements of concurrent jobs into one round trip and one commit (a lone request is sent at once); false runs each on its own',
    ),
  DB_QUERY_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .default(30_000)
    .describe(
      'a statement unanswered this long fails and its connection is closed (a database cut off without closing its connections), and a transaction idle this long on the server is ended by it; a hold or settlement whose answer was lost is reconciled when the database answers again',
    ),
  DB_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).default(10_000).describe('how long opening a PostgreSQL connection may take before it fails'),
  IDEMPOTENCY_TTL_HOURS: z.coerce.number().int().min(24).default(24).describe('how long Idempotency-Key answers are kept'),
  CONSUMPTION_HOLD_CREDITS: z.coerce
    .number()
    .int()
    .min(0)
    .default(1)
    .describe('credits a new job reserves in the consumption budget modes (topped up after each call)'),
  EARLY_UPSTREAM_MIN_HOLDS: z.coerce
    .number()
    .int()
    .min(0)
    .default(100)
    .describe(
      "a one-shot call's upstream request is sent while its job's hold is still being written when this instance last saw the team's available credits cover at least this many such holds; nothing reaches the client before the hold is written, and a refused hold aborts the request (0: always write the hold first)",
    ),
  JOB_TIMEOUT_SECONDS: z.coerce
    .number()
    .int()
    .min(10)
    .default(3600)
    .describe(
      'an open job with no activity and no call in flight for this long is expired (what it delivered is charged, the rest of its hold released); recorded on each job when it is created, so every instance sweeps it alike',
    ),
  CALL_LEASE_SECONDS: z.coerce
    .number()
    .int()
    .min(3)
    .max(3600)
    .default(30)
    .describe(
      'an instance renews the lease of each call it runs every third of this; a call whose lease lapsed (its instance died) is abandoned by the sweeper and billed at its reservation',
    ),
  DEFAULT_MAX_TOKENS: z.coerce
    .number()
    .int()
    .min(16)
    .max(1_000_000)
    .default(4096)
    .describe('completion limit of a call that sets neither max_tokens nor max_completion_tokens (every call is bounded, and its worst case reserved, before it leaves)'),
  STREAM_WRITE_TIMEOUT_MS: durationMs(30_000, 'a streaming client that reads nothing for this long while its socket is full is treated as gone: the call is aborted, recorded and settled'),
  SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(30).describe('how often expired jobs are swept'),
  UPSTREAM_TIMEOUT_MS: durationMs(600_000, 'longest a non-streamed upstream call may take'),
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: durationMs(60_000, "how long a streamed call waits for a model's first chunk before trying the next model"),
  UPSTREAM_CHUNK_TIMEOUT_MS: durationMs(60_000, 'longest silence between two chunks of a stream before it is failed'),
  STREAM_KEEPALIVE_MS: durationMs(5_000, 'an SSE comment is sent after this much silence so proxies keep the connection'),
  CACHE_TTL_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(60_000)
    .default(5_000)
    .describe('how long verified keys, team settings and prices are trusted without a database lookup (0: never); bounds how late a change missed by NOTIFY is seen'),
  MAX_INFLIGHT_REQUESTS: z.coerce
    .number()
    .int()
    .min(1)
    .default(5_000)
    .describe('requests (open streams included) one instance serves at once; more get 503 with Retry-After'),
  MAX_DB_WAITING: z.coerce
    .number()
    .int()
    .min(1)
    .default(200)
    .describe('queries waiting for a database connection beyond which new requests get 503 with Retry-After'),
  QUEUE_MAX_OPEN_PER_TEAM: z.coerce.number().int().min(1).default(100).describe('queued calls one team may have waiting or running; more get 429 queue_full'),
  QUEUE_MAX_RUNNING: z.coerce
    .number()
    .int()
    .min(1)
    .default(64)
    .describe(
      'queued calls one instance runs at once (what bounds their memory: each holds its answer until it is recorded, and nothing reads it at the pace of a client); the others wait in the queue, in the order they came, still cancellable',
    ),
  QUEUE_ITEM_BUFFER_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(256 * 1024)
    .describe('replay frames one queued call keeps for readers attaching late (beyond it they get the call replayed from its record once it ends), and how far one reader may fall behind'),
  QUEUE_BUFFER_BYTES: z.coerce.number().int().min(1024).default(64 * 1024 * 1024).describe('replay frames all queued calls of an instance keep together'),
  QUEUE_LINGER_MS: z.coerce.number().int().min(0).default(10_000).describe("how long a finished queued call's frames stay in memory for readers attaching just after it ended"),
  WEBHOOK_TIMEOUT_MS: durationMs(10_000, 'how long an endpoint has to answer a webhook delivery'),
  WEBHOOK_MAX_AGE_HOURS: z.coerce.number().int().min(1).max(720).default(72).describe('an event not delivered within this many hours is given up on (its delivery marked failed)'),
  WEBHOOK_RETRY_BASE_MS: durationMs(5_000, "the first retry of a failed webhook delivery waits about this long; each next one twice as long (with jitter), at most an hour"),
  WEBHOOK_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe('delivered and failed webhook deliveries, and events with nothing left to deliver, are deleted after this many days'),
  LOW_BALANCE_CHECK_MS: durationMs(2_000, 'how often the instances look for teams that crossed a balance alert (credits.low, credits.depleted, credits.refill_requested)'),
  WEBHOOK_POLL_MS: durationMs(500, 'how often each instance looks for webhook events to fan out and deliveries to attempt'),
  HEADERS_TIMEOUT_MS: durationMs(10_000, "a client's request headers must have arrived within this"),
  REQUEST_TIMEOUT_MS: durationMs(30_000, "a client's whole request (its body) must have arrived within this; the response, a stream, may last longer"),
  MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: z.coerce
    .number()
    .int()
    .min(1)
    .default(256)
    .describe('connections one client address may hold open before one of them carried an authenticated request; more are closed at once'),
  CREDIT_PRICE_USD: z
    .string()
    .trim()
    .regex(/^\d{1,9}(\.\d{1,9})?$/, 'must be a non-negative decimal, e.g. 0.01')
    .default('0.01')
    .describe("what one credit sells for, in USD: the operator console's margins compare credits charged at this price with the upstream cost"),
  STRIPE_WEBHOOK_SECRET: optionalString.describe(
    "the signing secret (whsec_...) of the Stripe webhook endpoint that posts to /api/billing/stripe/webhook; unset: that route answers 409 stripe_not_configured",
  ),
  STRIPE_SECRET_KEY: optionalString.describe(
    'Stripe secret or restricted key: enables POST /api/teams/{team_id}/checkout, reading Checkout line items and invoice payments, and charging auto-refills',
  ),
  STRIPE_PRICE_CREDITS: optionalString
    .transform((value, ctx) => {
      if (value === undefined) return {};
      try {
        return JSON.parse(value) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object such as {"price_123": 1000}' });
        return z.NEVER;
      }
    })
    .pipe(z.record(z.string().min(1).max(255), z.number().int().min(1).max(1_000_000_000)))
    .describe('credits bought by one unit of each Stripe price, as JSON {"<price id>": credits}; used when a payment names no credits in its metadata'),
  STRIPE_CURRENCY: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^[a-z]{3}$/, 'must be a three-letter ISO currency code')
    .default('usd')
    .describe('currency of the Checkout sessions and auto-refill charges creditgate creates (CREDIT_PRICE_USD per credit, in this currency)'),
  STRIPE_API_URL: z
    .url({ protocol: /^https?$/ })
    .refine((url) => new URL(url).pathname === '/', 'must be an origin without a path, e.g. http://localhost:12111')
    .default('https://api.stripe.com')
    .describe("Stripe's API; point it at stripe-mock or a proxy"),
  SHUTDOWN_GRACE_MS: durationMs(
    10_000,
    'on SIGTERM, how long open requests and streams may run to their end; then each open stream gets an error event and [DONE], and its call is recorded and settled before the process exits',
  ),
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

export class ConfigError extends Error {}

/** Parses the environment once; every problem is reported on one line naming its variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  // The embedded PostgreSQL is always reached directly: a direct URL without DATABASE_URL points somewhere else.
  if (parsed.data.DATABASE_DIRECT_URL && !parsed.data.DATABASE_URL) {
    throw new ConfigError('invalid configuration: DATABASE_DIRECT_URL: needs DATABASE_URL (the database it reaches directly)');
  }
  return Object.freeze(parsed.data);
}
