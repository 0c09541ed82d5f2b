import { and, asc, eq, inArray, not, sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { withTransaction, type Database } from '../../db/client.js';
import { webhookDeliveries, webhookEndpoints, webhookEvents } from '../../db/schema/index.js';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';
import type { SecretBox } from '../../lib/secret-box.js';

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

/** A claim outlives the longest attempt (its timeout) by this much, so no other instance sends it meanwhile. */
const LEASE_MARGIN_MS = 5_000;
const BATCH = 200;
const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_BACKOFF_MS = 3_600_000;
/** Fan-out is serialised across instances, so deliveries of one endpoint are created in event order. */
const FAN_OUT_LOCK = 0x77686b73;
const PRUNE_EVERY_MS = 600_000;

/** A delivery this instance claimed: `attempts` (as counted by the claim) identifies the claim. */
interface Claim {
  id: string;
  endpointId: string;
  attempts: number;
}

/**
 * Delivers the outbox to the endpoints, at least once, from every instance at the same time:
 * - fan-out: each new event becomes one delivery per enabled endpoint subscribed to its type;
 * - per endpoint, only its oldest pending delivery is attempted (in order: an endpoint that fails holds the later
 *   ones back until it succeeds or the delivery is given up), claimed with a lease that outlives the attempt's
 *   timeout, so instances never send the same attempt twice and a crashed one's claim lapses; an outcome is written
 *   only while its claim is still the delivery's latest;
 * - endpoints are served side by side: a slow one holds back only itself, and one that answers is sent its next
 *   due delivery at once, not a poll interval later;
 * - signed per the Standard Webhooks specification, POSTed with a timeout, no redirect followed and the response
 *   read up to 64 KiB; retried with exponential backoff and jitter until it succeeds or is `maxAgeMs` old.
 */
export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private prunedAt = 0;
  /** Endpoints with an attempt in flight from this instance, and those attempts. */
  private readonly sending = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

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

  /** Stops polling and cuts the attempts in flight short: their deliveries go back to pending, due at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.running;
    await Promise.all(this.inFlight);
  }

  /** One round: fan new events out, start an attempt for every endpoint's due head delivery. */
  private async tick(): Promise<void> {
    if (Date.now() - this.prunedAt >= PRUNE_EVERY_MS) await this.prune();
    await this.fanOut();
    for (const claim of await this.claimDue()) this.sendFrom(claim);
  }

  private get leaseMs(): number {
    return this.options.timeoutMs + LEASE_MARGIN_MS;
  }

  private sendFrom(first: Claim): void {
    this.sending.add(first.endpointId);
    const run = (async () => {
      let claim: Claim | undefined = first;
      while (claim && !this.stopping.signal.aborted) {
        const delivered = await this.attempt(claim);
        claim = delivered ? (await this.claimDue(claim.endpointId))[0] : undefined;
      }
    })()
      .catch((error: unknown) => this.log.warn({ err: error, endpoint_id: first.endpointId }, 'webhook delivery failed'))
      .finally(() => {
        this.sending.delete(first.endpointId);
        this.inFlight.delete(run);
      });
    this.inFlight.add(run);
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

  /**
   * The oldest pending delivery of each enabled endpoint (or of `endpointId` only), when due and not held by another
   * claim, leased to this instance; endpoints this instance is already sending to are left to that attempt.
   */
  private async claimDue(endpointId?: string): Promise<Claim[]> {
    const busy = endpointId ? [] : [...this.sending];
    const result = await this.db.execute<{ id: string; endpoint_id: string; attempts: number }>(sql`
      WITH heads AS (
        SELECT d.id FROM ${webhookEndpoints} e
        CROSS JOIN LATERAL (
          SELECT id, next_attempt_at, locked_until FROM ${webhookDeliveries}
           WHERE endpoint_id = e.id AND status = 'pending' ORDER BY seq LIMIT 1
        ) d
        WHERE e.enabled AND d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until < now())
          ${endpointId ? sql`AND e.id = ${endpointId}` : busy.length > 0 ? sql`AND e.id NOT IN (${sql.join(busy.map((id) => sql`${id}`), sql`, `)})` : sql``}
        LIMIT ${BATCH}
      )
      UPDATE ${webhookDeliveries} w
         SET locked_until = now() + make_interval(secs => ${this.leaseMs / 1000}), attempts = attempts + 1
        FROM heads
       WHERE w.id = heads.id AND w.status = 'pending' AND (w.locked_until IS NULL OR w.locked_until < now())
      RETURNING w.id, w.endpoint_id, w.attempts`);
    return result.rows.map((row) => ({ id: row.id, endpointId: row.endpoint_id, attempts: Number(row.attempts) }));
  }

  /** Sends one claimed delivery and records the outcome (if the claim is still its latest); true when delivered. */
  private async attempt(claim: Claim): Promise<boolean> {
    const [row] = await this.db
      .select({ event: webhookEvents, url: webhookEndpoints.url, secret: webhookEndpoints.secretEncrypted })
      .from(webhookDeliveries)
      .innerJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
      .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
      .where(eq(webhookDeliveries.id, claim.id));
    if (!row) return false;
    const outcome = await this.send(row.url, row.secret, row.event).catch((error: unknown) => ({
      ok: false,
      status: null,
      error: error instanceof Error ? error.message : String(error),
    }));
    const ours = and(eq(webhookDeliveries.id, claim.id), eq(webhookDeliveries.status, 'pending'), eq(webhookDeliveries.attempts, claim.attempts));
    if (this.stopping.signal.aborted && !outcome.ok) {
      // Cut short by shutdown: not the endpoint's failure; another instance (or this one restarted) sends it now.
      await this.db.update(webhookDeliveries).set({ lockedUntil: null, nextAttemptAt: sql`now()`, attempts: sql`attempts - 1` }).where(ours);
      return false;
    }
    if (outcome.ok) {
      await this.db
        .update(webhookDeliveries)
        .set({ status: 'delivered', deliveredAt: sql`now()`, lastStatusCode: outcome.status, lastError: null, lockedUntil: null })
        .where(ours);
      return true;
    }
    const tooOld = Date.now() - row.event.createdAt.getTime() >= this.options.maxAgeMs;
    const backoff = Math.min(MAX_BACKOFF_MS, this.options.retryBaseMs * 2 ** (claim.attempts - 1)) * (0.8 + Math.random() * 0.4);
    await this.db
      .update(webhookDeliveries)
      .set({
        status: tooOld ? 'failed' : 'pending',
        lastStatusCode: outcome.status,
        lastError: outcome.error,
        nextAttemptAt: new Date(Date.now() + backoff),
        lockedUntil: null,
      })
      .where(ours);
    this.log.warn({ delivery_id: claim.id, url: row.url, status: outcome.status, attempts: claim.attempts, given_up: tooOld }, 'webhook delivery failed');
    return false;
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
      signal: AbortSignal.any([AbortSignal.timeout(this.options.timeoutMs), this.stopping.signal]),
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
