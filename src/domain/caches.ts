import type { ModelPrice } from './billing/pricing.models.js';
import type { Actor } from './context.js';
import type { TeamSnapshot } from './tenancy/team-snapshot.js';

export const CACHE_CHANNEL = 'creditgate_cache';

/** What changed: one key, one team's settings, every team's models (a model group changed), or the prices. */
export type Invalidation = { keyId: string } | { teamId: string } | { allTeams: true } | { prices: true };

/** A map whose entries live at most `ttlMs` (or until their own deadline), bounded in size. */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 100_000,
  ) {}

  get(key: string, now = Date.now()): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V, deadline?: number, now = Date.now()): void {
    if (this.ttlMs <= 0) return;
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, until: Math.min(now + this.ttlMs, deadline ?? Infinity) });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  deleteWhere(match: (value: V) => boolean): void {
    for (const [key, entry] of this.entries) if (match(entry.value)) this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

export type TeamActor = Extract<Actor, { kind: 'team' }>;

/**
 * What the hot path would otherwise read on every request: verified virtual keys (by hash), team settings and
 * model routes, model prices. Entries live at most `ttlMs`, which bounds how late a change can be seen; a change
 * also drops the affected entries at once, here and, through NOTIFY, on every other instance.
 */
export class Caches {
  readonly keys: TtlCache<TeamActor>;
  readonly teams: TtlCache<TeamSnapshot>;
  readonly prices: TtlCache<ModelPrice | null>;
  /**
   * What each team had available right after this instance's last hold for it, in micro-credits. Only a hint
   * (other instances spend too): it decides whether a one-shot call may contact the upstream while its hold is
   * still being written; the hold itself always decides who is served.
   */
  readonly availableCredits: TtlCache<number>;

  constructor(
    ttlMs: number,
    private readonly publish: (message: string) => Promise<void>,
  ) {
    this.keys = new TtlCache(ttlMs);
    this.teams = new TtlCache(ttlMs, 10_000);
    this.prices = new TtlCache(ttlMs, 10_000);
    this.availableCredits = new TtlCache(ttlMs, 10_000);
  }

  async invalidate(change: Invalidation): Promise<void> {
    const message = JSON.stringify(change);
    this.dropHere(message);
    await this.publish(message);
  }

  dropHere(message: string): void {
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
