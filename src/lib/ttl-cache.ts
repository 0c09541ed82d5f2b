/** A loaded value and, when it has one of its own, the time it stops being valid (an expiring key). */
export interface Loaded<V> {
  value: V;
  until?: number;
}

/** Entries older than this share of their life are reloaded in the background when read, so hot ones never expire. */
const REFRESH_AFTER = 0.8;
/** At most this many entries are reloaded per keep-warm pass, whatever the cache holds (a bound on its queries). */
const KEEP_WARM_BATCH = 100;

type Load<V> = () => Promise<Loaded<V> | undefined>;

interface Entry<V> {
  value: V;
  loadedAt: number;
  until: number;
}

/**
 * A map whose entries live at most `ttlMs` (or until their own deadline), bounded in size.
 *
 * Invalidation is versioned: every delete bumps a generation, and a load that started before an invalidation never
 * stores its result. Without that, a lookup that read a row just before a revoke could put the stale row back
 * after the revoke cleared it (a revoked key working for another TTL). Concurrent loads of one key share one
 * query, and an entry read late in its life is refreshed in the background, so a busy key never pays a miss. With
 * `keepWarm` running, an entry asked for recently is also refreshed before it expires when nobody reads it, so a
 * key, team or price in use does not miss after a pause shorter than `keepWarmMs` either (each refresh reads the
 * database afresh, so the TTL still bounds how stale an entry can be).
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly loading = new Map<string, Promise<V | undefined>>();
  private generation = 0;
  /**
   * While keepWarm runs: the cached keys getOrLoad was asked for, the least recently asked first, with how each
   * loads. A pass walks only these (the ones asked long ago are dropped from the front), not the whole cache, and
   * a key nobody could load (an unknown secret) never gets here.
   */
  private readonly asked = new Map<string, { at: number; load: Load<V> }>();
  private keepingWarm = false;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 100_000,
    private readonly keepWarmMs = 30_000,
  ) {}

  /**
   * Refreshes, every tenth of the TTL (half the span in which an entry counts as late), the entries asked for
   * within `keepWarmMs` that are late in their life (at most KEEP_WARM_BATCH a pass). Returns what stops it.
   */
  keepWarm(): () => void {
    if (this.ttlMs <= 0) return () => undefined;
    this.keepingWarm = true;
    const timer = setInterval(() => this.refreshWarm(), Math.max(50, this.ttlMs / 10));
    timer.unref();
    return () => {
      clearInterval(timer);
      this.keepingWarm = false;
      this.asked.clear();
    };
  }

  private refreshWarm(now = Date.now()): void {
    let started = 0;
    for (const [key, ask] of this.asked) {
      if (now - ask.at > this.keepWarmMs) {
        this.asked.delete(key);
        continue;
      }
      if (started >= KEEP_WARM_BATCH) return;
      const entry = this.entries.get(key);
      if (!entry || entry.until <= now || !this.isLate(entry, now)) continue;
      started++;
      void this.loadOnce(key, ask.load).catch(() => undefined);
    }
  }

  /** Past REFRESH_AFTER of its life: reloaded in the background, by a read or a keep-warm pass. */
  private isLate(entry: Entry<V>, now: number): boolean {
    return now - entry.loadedAt > this.ttlMs * REFRESH_AFTER;
  }

  /** Moves `key` to the back of `asked` (on the request path: the record is reused, not allocated again). */
  private noteAsked(key: string, load: Load<V>, now: number): void {
    if (!this.keepingWarm) return;
    const ask = this.asked.get(key);
    if (!ask) {
      this.asked.set(key, { at: now, load });
      return;
    }
    this.asked.delete(key);
    ask.at = now;
    ask.load = load;
    this.asked.set(key, ask);
  }

  get(key: string, now = Date.now()): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /**
   * The cached value, or what `load` finds (cached unless an invalidation happened meanwhile); undefined when
   * `load` finds nothing, which is not cached. `load` is shared with the callers that ask meanwhile and may run after
   * its caller went on (a background reload), so it must use nothing its caller owns, such as a transaction.
   */
  async getOrLoad(key: string, load: Load<V>): Promise<V | undefined> {
    const now = Date.now();
    const entry = this.entries.get(key);
    if (entry && entry.until > now) {
      this.noteAsked(key, load, now);
      if (this.isLate(entry, now)) void this.loadOnce(key, load).catch(() => undefined);
      return entry.value;
    }
    const value = await this.loadOnce(key, load);
    if (value !== undefined && this.entries.has(key)) this.noteAsked(key, load, now);
    return value;
  }

  private loadOnce(key: string, load: Load<V>): Promise<V | undefined> {
    const pending = this.loading.get(key);
    if (pending) return pending;
    const generation = this.generation;
    const loading = load()
      .then((loaded) => {
        if (loaded && generation === this.generation) this.set(key, loaded.value, loaded.until);
        return loaded?.value;
      })
      .finally(() => {
        if (this.loading.get(key) === loading) this.loading.delete(key);
      });
    this.loading.set(key, loading);
    return loading;
  }

  set(key: string, value: V, deadline?: number, now = Date.now()): void {
    if (this.ttlMs <= 0) return;
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, loadedAt: now, until: Math.min(now + this.ttlMs, deadline ?? Infinity) });
  }

  delete(key: string): void {
    this.invalidated();
    this.entries.delete(key);
  }

  deleteWhere(match: (value: V) => boolean): void {
    this.invalidated();
    for (const [key, entry] of this.entries) if (match(entry.value)) this.entries.delete(key);
  }

  clear(): void {
    this.invalidated();
    this.entries.clear();
  }

  /** Loads in flight started before this change: their results are dropped, and the next read loads afresh. */
  private invalidated(): void {
    this.generation++;
    this.loading.clear();
  }
}
