import { asc, eq, inArray, not, sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { withTransaction, type Database } from '../../db/client.js';
import { webhookDeliveries, webhookEndpoints, webhookEvents } from '../../db/schema/index.js';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';
import type { SecretBox } from './secret-box.js';

export interface DispatcherOptions {
  pollMs: number;
  timeoutMs: number;
  /** An event older than this is given up on (its delivery marked failed). */
  maxAgeMs: number;
  /** The first retry waits about this long; each next one twice as long (with jitter), at most an hour. */
  retryBaseMs: number;
  /** Delivered and failed deliveries, and events with nothing left to deliver, are deleted after this long. */
  retentionMs: number;
}

const LEASE_MS = 60_000;
const BATCH = 200;
const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_BACKOFF_MS = 3_600_000;
/** Fan-out is serialised across instances, so deliveries of one endpoint are created in event order. */
const FAN_OUT_LOCK = 0x77686b73;
const PRUNE_EVERY_MS = 600_000;

type Delivery = typeof webhookDeliveries.$inferSelect;

/**
 * Delivers the outbox to the endpoints, at least once, from every instance at the same time:
 * - fan-out: each new event becomes one delivery per enabled endpoint subscribed to its type;
 * - per endpoint, only its oldest pending delivery is attempted (in order: an endpoint that fails holds the later
 *   ones back until it succeeds or the delivery is given up), claimed with a lease (FOR UPDATE semantics through a
 *   conditional update), so instances never send the same attempt twice and a crashed one's claim lapses;
 * - signed per the Standard Webhooks specification, POSTed with a timeout, no redirect followed and the response
 *   read up to 64 KiB; retried with exponential backoff and jitter until it succeeds or is `maxAgeMs` old.
 */
export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private prunedAt = 0;

  constructor(
    private readonly db: Database,
    private readonly box: SecretBox,
    private readonly options: DispatcherOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.tick()).catch((error: unknown) => this.log.warn({ err: error }, 'webhook dispatch failed'));
    }, this.options.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One round: fan new events out, attempt every endpoint's due head delivery. */
  async tick(): Promise<void> {
    if (Date.now() - this.prunedAt >= PRUNE_EVERY_MS) await this.prune();
    await this.fanOut();
    const claimed = await this.claimDue();
    await Promise.all(claimed.map((delivery) => this.attempt(delivery)));
  }

  private async fanOut(): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const locked = await tx.execute<{ locked: boolean }>(sql`SELECT pg_try_advisory_xact_lock(${FAN_OUT_LOCK}) AS locked`);
      if (!locked.rows[0]?.locked) return;
      const events = await tx.select({ id: webhookEvents.id, type: webhookEvents.type }).from(webhookEvents).where(not(webhookEvents.fannedOut)).orderBy(asc(webhookEvents.seq)).limit(BATCH);
      if (events.length === 0) return;
      const endpoints = await tx.select({ id: webhookEndpoints.id, events: webhookEndpoints.events }).from(webhookEndpoints).where(eq(webhookEndpoints.enabled, true));
      const deliveries = events.flatMap((event) =>
        endpoints
          .filter((endpoint) => endpoint.events === null || endpoint.events.includes(event.type))
          .map((endpoint) => ({ id: newId('whd'), eventId: event.id, endpointId: endpoint.id })),
      );
      if (deliveries.length > 0) await tx.insert(webhookDeliveries).values(deliveries);
      await tx.update(webhookEvents).set({ fannedOut: true }).where(inArray(webhookEvents.id, events.map((event) => event.id)));
    });
  }

  /** Keeps the outbox and the delivery log to the retention period (several instances may prune at once: harmless). */
  private async prune(): Promise<void> {
    this.prunedAt = Date.now();
    const before = new Date(Date.now() - this.options.retentionMs);
    await this.db.execute(sql`DELETE FROM ${webhookDeliveries} WHERE status <> 'pending' AND created_at < ${before}`);
    await this.db.execute(sql`
      DELETE FROM ${webhookEvents} e WHERE e.fanned_out AND e.created_at < ${before}
         AND NOT EXISTS (SELECT 1 FROM ${webhookDeliveries} d WHERE d.event_id = e.id)`);
  }

  /** Each enabled endpoint's oldest pending delivery, when due and not held by another instance, leased to this one. */
  private async claimDue(): Promise<Delivery[]> {
    const result = await this.db.execute<Record<string, unknown>>(sql`
      WITH heads AS (
        SELECT d.id FROM ${webhookEndpoints} e
        CROSS JOIN LATERAL (
          SELECT id, next_attempt_at, locked_until FROM ${webhookDeliveries}
           WHERE endpoint_id = e.id AND status = 'pending' ORDER BY seq LIMIT 1
        ) d
        WHERE e.enabled AND d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until < now())
        LIMIT ${BATCH}
      )
      UPDATE ${webhookDeliveries} w
         SET locked_until = now() + make_interval(secs => ${LEASE_MS / 1000}), attempts = attempts + 1
        FROM heads
       WHERE w.id = heads.id AND w.status = 'pending' AND (w.locked_until IS NULL OR w.locked_until < now())
      RETURNING w.id`);
    const ids = result.rows.map((row) => row.id as string);
    return ids.length === 0 ? [] : this.db.select().from(webhookDeliveries).where(inArray(webhookDeliveries.id, ids));
  }

  private async attempt(delivery: Delivery): Promise<void> {
    const [row] = await this.db
      .select({ event: webhookEvents, url: webhookEndpoints.url, secret: webhookEndpoints.secretEncrypted })
      .from(webhookDeliveries)
      .innerJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
      .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
      .where(eq(webhookDeliveries.id, delivery.id));
    if (!row) return;
    const outcome = await this.send(row.url, row.secret, row.event).catch((error: unknown) => ({
      ok: false,
      status: null,
      error: error instanceof Error ? error.message : String(error),
    }));
    if (outcome.ok) {
      await this.db
        .update(webhookDeliveries)
        .set({ status: 'delivered', deliveredAt: sql`now()`, lastStatusCode: outcome.status, lastError: null, lockedUntil: null })
        .where(eq(webhookDeliveries.id, delivery.id));
      return;
    }
    const tooOld = Date.now() - row.event.createdAt.getTime() >= this.options.maxAgeMs;
    const backoff = Math.min(MAX_BACKOFF_MS, this.options.retryBaseMs * 2 ** (delivery.attempts - 1)) * (0.8 + Math.random() * 0.4);
    await this.db
      .update(webhookDeliveries)
      .set({
        status: tooOld ? 'failed' : 'pending',
        lastStatusCode: outcome.status,
        lastError: outcome.error,
        nextAttemptAt: new Date(Date.now() + backoff),
        lockedUntil: null,
      })
      .where(eq(webhookDeliveries.id, delivery.id));
    this.log.warn({ delivery_id: delivery.id, url: row.url, status: outcome.status, attempts: delivery.attempts, given_up: tooOld }, 'webhook delivery failed');
  }

  private async send(url: string, sealedSecret: string, event: typeof webhookEvents.$inferSelect): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const secret = this.box.open(sealedSecret);
    if (!secret) return { ok: false, status: null, error: 'the signing secret cannot be read with this instance secret; rotate it (PATCH rotate_secret)' };
    const body = JSON.stringify({ type: event.type, timestamp: event.createdAt.toISOString(), data: event.payload });
    const sentAt = new Date();
    const signature = new Webhook(secret).sign(event.id, sentAt, body);
    const response = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      signal: AbortSignal.timeout(this.options.timeoutMs),
      headers: {
        'content-type': 'application/json',
        'user-agent': 'creditgate-webhooks',
        'webhook-id': event.id,
        'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
        'webhook-signature': signature,
      },
      body,
    });
    const text = await readCapped(response, MAX_RESPONSE_BYTES);
    if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status, error: null };
    const why = response.status >= 300 && response.status < 400 ? 'redirects are not followed' : text.slice(0, 200);
    return { ok: false, status: response.status, error: `HTTP ${response.status}${why ? `: ${why}` : ''}` };
  }
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}
