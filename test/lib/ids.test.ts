import { describe, expect, it, vi } from 'vitest';
import { newId } from '../../src/lib/ids.js';

describe('newId', () => {
  it('makes prefixed ids of 9 time and 12 random base-36 digits', () => {
    expect(newId('led')).toMatch(/^led_[0-9a-z]{21}$/);
  });

  it('is strictly increasing within a process, in one millisecond or many', () => {
    const ids = Array.from({ length: 20_000 }, () => newId('x'));
    const sorted = [...ids].sort();
    expect(ids).toEqual(sorted);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('keeps increasing while the clock goes back', () => {
    const before = newId('x');
    const now = vi.spyOn(Date, 'now').mockReturnValue(Date.now() - 60_000);
    try {
      const during = [newId('x'), newId('x')];
      expect(during[0]! > before).toBe(true);
      expect(during[1]! > during[0]!).toBe(true);
    } finally {
      now.mockRestore();
    }
  });
});
