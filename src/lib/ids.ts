import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const RANDOM_DIGITS = 12;

// Random bytes are drawn from the system in blocks rather than per id: one syscall serves hundreds of ids.
const pool = Buffer.alloc(RANDOM_DIGITS * 256);
let offset = pool.length;

let lastTime = 0;
const lastRandom = new Array<number>(RANDOM_DIGITS).fill(0);

/**
 * Prefixed, time-ordered ids (`led_…`, `key_…`): sortable by creation and readable in logs. Within one process they
 * are strictly increasing: an id made in the same millisecond as the one before (or while the clock went back) is
 * that id plus one in its random part, so a hold and the charge that follows it sort in that order.
 */
export function newId(prefix: string): string {
  const now = Date.now();
  if (now > lastTime) {
    lastTime = now;
    if (offset + RANDOM_DIGITS > pool.length) {
      randomFillSync(pool);
      offset = 0;
    }
    for (let i = 0; i < RANDOM_DIGITS; i++) lastRandom[i] = (pool[offset + i] as number) % 36;
    offset += RANDOM_DIGITS;
  } else {
    increment(lastRandom);
  }
  let random = '';
  for (const digit of lastRandom) random += ALPHABET[digit];
  return `${prefix}_${lastTime.toString(36).padStart(9, '0')}${random}`;
}

/** Adds one to a base-36 number, most significant digit first (36^12 ids per millisecond before it wraps). */
function increment(digits: number[]): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    if ((digits[i] as number) < 35) {
      digits[i] = (digits[i] as number) + 1;
      return;
    }
    digits[i] = 0;
  }
}
