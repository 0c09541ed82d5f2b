import { randomUUID } from 'node:crypto';
import { PgTransaction } from 'drizzle-orm/pg-core';
import type { DbOrTx } from '../db/client.js';
import { TtlCache, type Loaded } from '../lib/ttl-cache.js';
import type { ModelPrice } from './billing/pricing.models.js';
import type { Actor } from './actor.js';
import type { TeamSnapshot } from './tenancy/team-snapshot.js';

export const CACHE_CHANNEL = 'creditgate_cache';

/** What changed: one key, one team's settings, every team's models (a model group changed), or the prices. */
export type Invalidation = { keyId: string } | { teamId: string } | { allTeams: true } | { prices: true };

export type TeamActor = Extract<Actor, { kind: 'team' }>;

/** How long a team's available credits seen at its last hold here are trusted as a hint (see availableCredits). */
const AVAILABLE_HINT_MS = 60_000;

/** How long an invalidation waits for every instance to confirm it before it answers anyway. */
const ACK_TIMEOUT_MS = 2_000;

/** Publishing to the other instances, and knowing how many there are. */
export interface CacheBus {
  publish(message: string): Promise<void>;
  countListeners(): Promise<number>;
}

/**
 * What the hot path would otherwise read on every request: verified virtual keys (by hash), team settings and
 * model routes, model prices. A change drops the affected entries here and, through NOTIFY, on every other
 * instance, after it committed (afterCommit); entries are versioned, so a lookup that read the old row cannot
 * cache it again (see TtlCache). `invalidate` answers once every instance listening has confirmed that it dropped
 * the entries (each answers an invalidation with an acknowledgement on the same channel: PostgreSQL delivers a
 * notification to each listener on its own schedule, so the sender's own copy coming back proves nothing about
 * the others'); `ttlMs` bounds how late a change is seen by an instance that missed it.
 */
export class Caches {
  readonly keys: TtlCache<TeamActor>;
  readonly teams: TtlCache<TeamSnapshot>;
  readonly prices: TtlCache<ModelPrice | null>;
  /**
   * What each team had available right after this instance's last hold for it, in micro-credits. Only a hint
   * (other instances spend too): it decides whether a one-shot call may contact the upstream while its hold is
   * still being written; the hold itself always decides who is served. Kept AVAILABLE_HINT_MS (with caching on),
   * longer than the caches: expired after a pause of a few seconds, the first calls after it waited for their holds
   * (12 ms more to the first token of a burst after 12 s idle, bench "after a quiet spell"). The hint only says the
   * team could afford EARLY_UPSTREAM_MIN_HOLDS holds at its last one; if it spent that since, elsewhere, one early
   * call's hold is refused, its upstream request aborted before anything reached its client, and the hint dropped.
   */
  readonly availableCredits: TtlCache<number>;

  constructor(
    ttlMs: number,
    private readonly bus: CacheBus,
  ) {
    this.keys = new TtlCache(ttlMs);
    this.teams = new TtlCache(ttlMs, 10_000);
    this.prices = new TtlCache(ttlMs, 10_000);
    this.availableCredits = new TtlCache(ttlMs > 0 ? Math.max(ttlMs, AVAILABLE_HINT_MS) : 0, 10_000);
  }

  /**
   * Keeps keys, teams and prices in use fresh through pauses in their traffic (see TtlCache.keepWarm): without it,
   * the first request after more than CACHE_TTL_MS of quiet reads all three again before its hold (5-6 ms of the
   * 8 ms a single stream lost after 12 s idle, measured with `npm start` defaults). Returns what stops it.
   */
  keepWarm(): () => void {
    const stops = [this.keys.keepWarm(), this.teams.keepWarm(), this.prices.keepWarm()];
    return () => stops.forEach((stop) => stop());
  }

  /** Invalidations of this instance waiting for acknowledgements: how many came, and what to call on each. */
  private readonly waiting = new Map<string, () => void>();

  async invalidate(change: Invalidation): Promise<void> {
    const id = randomUUID();
    const message = JSON.stringify({ ...change, id });
    this.dropHere(message);
    let acknowledged = 0;
    let expected = Number.POSITIVE_INFINITY;
    const confirmed = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ACK_TIMEOUT_MS);
      this.waiting.set(id, () => {
        acknowledged++;
        if (acknowledged >= expected) done();
      });
    });
    // Counted before publishing (an instance that starts listening later reads the database after the change), and
    // before any acknowledgement can come.
    expected = await this.bus.countListeners();
    await this.bus.publish(message);
    await confirmed;
  }

  /** A notifier that lost its connection may have missed invalidations: nothing cached can be trusted. */
  dropAll(): void {
    for (const cache of [this.keys, this.teams, this.prices, this.availableCredits]) cache.clear();
  }

  /**
   * A message of the channel, from any instance (this one's included): an invalidation is applied, then
   * acknowledged to its sender; an acknowledgement counts for the invalidation of this instance it answers.
   */
  receive(message: string): void {
    const parsed = JSON.parse(message) as { ack?: string; id?: string };
    if (parsed.ack) {
      this.waiting.get(parsed.ack)?.();
      return;
    }
    this.dropHere(message);
    if (parsed.id) this.bus.publish(JSON.stringify({ ack: parsed.id })).catch(() => undefined);
  }

  private dropHere(message: string): void {
    const change = JSON.parse(message) as Partial<{ keyId: string; teamId: string; allTeams: true; prices: true }>;
    if (change.keyId) this.keys.deleteWhere((actor) => actor.keyId === change.keyId);
    if (change.teamId) {
      this.keys.deleteWhere((actor) => actor.teamId === change.teamId);
      this.teams.deleteWhere((snapshot) => snapshot.team.id === change.teamId);
    }
    if (change.allTeams) this.teams.clear();
    if (change.prices) this.prices.clear();
  }
}

/**
 * `read` through `cache`, for a caller on `db`. A cache load is shared by every caller asking for the key meanwhile,
 * and an entry read late in its life is reloaded in the background after its caller went on; so it runs on the
 * pool only. On a caller's transaction the others would wait on that transaction, which may itself wait for a pool
 * connection they hold (a pool-wide deadlock), and the background reload would run on a client the transaction is
 * using or has given back. A caller inside a transaction gets the cached entry, or else reads on its transaction,
 * for itself alone and uncached (it may see its own uncommitted change).
 */
export async function readThroughCache<V>(
  cache: TtlCache<V>,
  db: DbOrTx,
  key: string,
  read: (db: DbOrTx) => Promise<Loaded<V> | undefined>,
): Promise<V | undefined> {
  if (db instanceof PgTransaction) {
    const cached = cache.get(key);
    return cached !== undefined ? cached : (await read(db))?.value;
  }
  return cache.getOrLoad(key, () => read(db));
}
