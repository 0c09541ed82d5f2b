import { TtlCache } from '../lib/ttl-cache.js';
import type { ModelPrice } from './billing/pricing.models.js';
import type { Actor } from './actor.js';
import type { TeamSnapshot } from './tenancy/team-snapshot.js';

export const CACHE_CHANNEL = 'creditgate_cache';

/** What changed: one key, one team's settings, every team's models (a model group changed), or the prices. */
export type Invalidation = { keyId: string } | { teamId: string } | { allTeams: true } | { prices: true };

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
