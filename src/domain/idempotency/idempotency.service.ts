import { createHash } from 'node:crypto';
import { and, eq, lt, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../../db/client.js';
import { idempotencyKeys } from '../../db/schema/index.js';
import { conflict } from '../../lib/errors.js';

export interface IdempotencyClaim {
  /** Whose key space this is (a team, or the admins): the same key from two callers never collides. */
  scope: string;
  key: string;
  requestHash: string;
}

export interface StoredResponse {
  status: number;
  body: unknown;
}

/** Fingerprint of what a request asks for: a retry must ask for exactly the same thing. */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256').update(`${method} ${path}\n${canonicalJson(body)}`).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Runs `work` at most once per key. The claim is inserted in the same transaction as the work, so a crash or
 * an error leaves no claim behind, and a concurrent retry waits on the claim's row until the first commits and
 * then replays its stored answer. The same key with a different request is a conflict.
 */
export async function runIdempotent(
  db: Database,
  claim: IdempotencyClaim,
  ttlHours: number,
  work: (tx: Transaction) => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  return db.transaction(async (tx) => {
    const where = and(eq(idempotencyKeys.scope, claim.scope), eq(idempotencyKeys.key, claim.key));
    await tx.delete(idempotencyKeys).where(and(where, lt(idempotencyKeys.expiresAt, sql`now()`)));
    const claimed = await tx
      .insert(idempotencyKeys)
      .values({
        scope: claim.scope,
        key: claim.key,
        requestHash: claim.requestHash,
        expiresAt: sql`now() + make_interval(hours => ${ttlHours})`,
      })
      .onConflictDoNothing()
      .returning({ key: idempotencyKeys.key });
    if (claimed.length === 0) {
      const [existing] = await tx.select().from(idempotencyKeys).where(where);
      if (!existing) throw conflict('Idempotency-Key is being reused concurrently; retry', 'idempotency_key_in_progress');
      if (existing.requestHash !== claim.requestHash) {
        throw conflict('Idempotency-Key was already used with a different request', 'idempotency_key_reused');
      }
      if (existing.status !== 'completed') {
        throw conflict('a request with this Idempotency-Key is still in progress', 'idempotency_key_in_progress');
      }
      return { status: existing.responseStatus!, body: existing.responseBody, replayed: true };
    }
    const response = await work(tx);
    await tx
      .update(idempotencyKeys)
      .set({ status: 'completed', responseStatus: response.status, responseBody: response.body })
      .where(where);
    return { ...response, replayed: false };
  });
}
