import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const RANDOM_BYTES = 12;

// Random bytes are drawn from the system in blocks rather than per id: one syscall serves hundreds of ids.
const pool = Buffer.alloc(RANDOM_BYTES * 256);
let offset = pool.length;

/** Prefixed, time-ordered ids (`led_…`, `key_…`): sortable by creation and readable in logs. */
export function newId(prefix: string, now = Date.now()): string {
  if (offset + RANDOM_BYTES > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  let random = '';
  for (let i = offset; i < offset + RANDOM_BYTES; i++) random += ALPHABET[(pool[i] as number) % 36];
  offset += RANDOM_BYTES;
  return `${prefix}_${now.toString(36).padStart(9, '0')}${random}`;
}
