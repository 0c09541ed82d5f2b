import type { Actor } from '../context.js';

export const AUTH_CHANNEL = 'creditgate_auth';

type TeamActor = Extract<Actor, { kind: 'team' }>;

interface Entry {
  actor: TeamActor;
  cachedUntil: number;
  keyExpiresAt: number | null;
}

/**
 * Verified team keys by hash, so the hot path does not query the database on every request. An entry lives at
 * most `ttlMs`, which bounds how late a revocation can be seen; revoking a key or suspending a team also drops
 * the entries at once, here and, through NOTIFY, on every other instance.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly publish: (message: string) => Promise<void>,
    private readonly maxEntries = 100_000,
  ) {}

  get(keyHash: string, now = Date.now()): TeamActor | undefined {
    const entry = this.entries.get(keyHash);
    if (!entry) return undefined;
    if (entry.cachedUntil <= now || (entry.keyExpiresAt !== null && entry.keyExpiresAt <= now)) {
      this.entries.delete(keyHash);
      return undefined;
    }
    return entry.actor;
  }

  set(keyHash: string, actor: TeamActor, keyExpiresAt: Date | null, now = Date.now()): void {
    if (this.ttlMs <= 0) return;
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(keyHash, { actor, cachedUntil: now + this.ttlMs, keyExpiresAt: keyExpiresAt?.getTime() ?? null });
  }

  /** `key:<key_id>` or `team:<team_id>`, as published by `invalidate`. */
  dropHere(message: string): void {
    const [kind, id] = message.split(':', 2);
    for (const [hash, entry] of this.entries) {
      if ((kind === 'key' && entry.actor.keyId === id) || (kind === 'team' && entry.actor.teamId === id)) this.entries.delete(hash);
    }
  }

  async invalidate(target: { keyId: string } | { teamId: string }): Promise<void> {
    const message = 'keyId' in target ? `key:${target.keyId}` : `team:${target.teamId}`;
    this.dropHere(message);
    await this.publish(message);
  }
}
