import { randomUUID } from 'node:crypto';
import { TtlCache } from '../lib/ttl-cache.js';
import type { ModelPrice } from './billing/pricing.models.js';
import type { Actor } from './actor.js';
import type { TeamSnapshot } from './tenancy/team-snapshot.js';

export const CACHE_CHANNEL = 'creditgate_cache';

/** What changed: one key, one team's settings, every team's models (a model group changed), or the prices. */
export type Invalidation = { keyId: string } | { teamId: string } | { allTeams: true } | { prices: true };

export type TeamActor = Extract<Actor, { kind: 'team' }>;

/** How long an invalidation waits for its own NOTIFY to come back before it answers anyway. */
const ECHO_TIMEOUT_MS = 2_000;

/**
 * What the hot path would otherwise read on every request: verified virtual keys (by hash), team settings and
 * model routes, model prices. A change drops the affected entries here and, through NOTIFY, on every other
 * instance, after it committed (afterCommit); entries are versioned, so a lookup that read the old row cannot
 * cache it again (see TtlCache). `invalidate` answers once its own notification came back, when PostgreSQL has
 * delivered it to every instance listening; `ttlMs` bounds how late a change is seen by an instance that missed it.
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

  private readonly echoes = new Map<string, () => void>();

  async invalidate(change: Invalidation): Promise<void> {
    const id = randomUUID();
    const message = JSON.stringify({ ...change, id });
    this.dropHere(message);
    const echoed = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.echoes.delete(id);
        resolve();
      }, ECHO_TIMEOUT_MS);
      this.echoes.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.publish(message);
    await echoed;
  }

  /** A notifier that lost its connection may have missed invalidations: nothing cached can be trusted. */
  dropAll(): void {
    for (const cache of [this.keys, this.teams, this.prices, this.availableCredits]) cache.clear();
  }

  dropHere(message: string): void {
    const change = JSON.parse(message) as Partial<{ keyId: string; teamId: string; allTeams: true; prices: true; id: string }>;
    if (change.id) {
      this.echoes.get(change.id)?.();
      this.echoes.delete(change.id);
    }
    if (change.keyId) this.keys.deleteWhere((actor) => actor.keyId === change.keyId);
    if (change.teamId) {
      this.keys.deleteWhere((actor) => actor.teamId === change.teamId);
      this.teams.deleteWhere((snapshot) => snapshot.team.id === change.teamId);
    }
    if (change.allTeams) this.teams.clear();
    if (change.prices) this.prices.clear();
  }
}
