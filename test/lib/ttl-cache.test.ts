import { describe, expect, it } from 'vitest';
import { TtlCache } from '../../src/lib/ttl-cache.js';

/** A load that finishes only when told to, as a database read would. */
function deferredLoad<V>(value: V) {
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let calls = 0;
  return {
    load: async () => {
      calls++;
      await finished;
      return { value };
    },
    finish: () => finish(),
    calls: () => calls,
  };
}

describe('TtlCache', () => {
  it('a load that started before an invalidation never stores what it read', async () => {
    const cache = new TtlCache<string>(60_000);
    const stale = deferredLoad('the key as it was before the revoke');
    const loading = cache.getOrLoad('key', stale.load);
    cache.delete('key'); // the revoke's invalidation arrives while the read is in flight
    stale.finish();
    expect(await loading).toBe('the key as it was before the revoke'); // that request already had it
    expect(cache.get('key')).toBeUndefined(); // but the next one reads the database again
    const fresh = deferredLoad('after');
    const next = cache.getOrLoad('key', fresh.load);
    fresh.finish();
    expect(await next).toBe('after');
    expect(cache.get('key')).toBe('after');
  });

  it('concurrent loads of one key share one read; nothing found is not cached', async () => {
    const cache = new TtlCache<number>(60_000);
    const shared = deferredLoad(7);
    const reads = [cache.getOrLoad('k', shared.load), cache.getOrLoad('k', shared.load), cache.getOrLoad('k', shared.load)];
    shared.finish();
    expect(await Promise.all(reads)).toEqual([7, 7, 7]);
    expect(shared.calls()).toBe(1);
    expect(await cache.getOrLoad('missing', async () => undefined)).toBeUndefined();
    expect(cache.get('missing')).toBeUndefined();
  });

  it('an entry lives at most its TTL or its own deadline; a TTL of 0 caches nothing', async () => {
    const cache = new TtlCache<string>(1_000);
    cache.set('a', 'x', undefined, 0);
    expect(cache.get('a', 999)).toBe('x');
    expect(cache.get('a', 1_000)).toBeUndefined();
    cache.set('b', 'y', 500, 0);
    expect(cache.get('b', 499)).toBe('y');
    expect(cache.get('b', 500)).toBeUndefined();
    const none = new TtlCache<string>(0);
    await none.getOrLoad('c', async () => ({ value: 'z' }));
    expect(none.get('c')).toBeUndefined();
  });

  it('an entry read late in its life is refreshed in the background, so a busy key never misses', async () => {
    const cache = new TtlCache<number>(100);
    let version = 0;
    const load = async () => ({ value: ++version });
    expect(await cache.getOrLoad('k', load)).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 90));
    expect(await cache.getOrLoad('k', load)).toBe(1); // still the cached value, a refresh started
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(cache.get('k')).toBe(2);
  });

  it('keeps an entry asked for recently fresh through a pause with no reads, and lets it go after keepWarmMs', async () => {
    const cache = new TtlCache<number>(500, 1_000, 1_200);
    const stop = cache.keepWarm();
    try {
      let version = 0;
      const load = async () => ({ value: ++version });
      expect(await cache.getOrLoad('k', load)).toBe(1);
      // Twice the TTL without a read: refreshed in the background, never missing, never older than the TTL.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(cache.get('k')).toBeGreaterThan(1);
      // Past keepWarmMs since the last ask: no more refreshes, and the entry expires.
      await new Promise((resolve) => setTimeout(resolve, 800));
      const settled = version;
      expect(cache.get('k')).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(version).toBe(settled);
    } finally {
      stop();
    }
  });

  it('keeps warm only what it can load again, and never what an invalidation removed', async () => {
    const cache = new TtlCache<number>(200, 1_000, 1_000);
    const stop = cache.keepWarm();
    try {
      cache.set('set directly', 1);
      let loads = 0;
      await cache.getOrLoad('revoked', async () => ({ value: ++loads }));
      cache.delete('revoked');
      await new Promise((resolve) => setTimeout(resolve, 450));
      expect(cache.get('set directly')).toBeUndefined();
      expect(cache.get('revoked')).toBeUndefined();
      expect(loads).toBe(1);
    } finally {
      stop();
    }
  });
});
