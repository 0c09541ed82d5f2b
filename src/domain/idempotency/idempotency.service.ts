import { createHash } from 'node:crypto';
import { and, eq, lt, sql } from 'drizzle-orm';
import type { Database, DbOrTx, Transaction } from '../../db/client.js';
import { idempotencyKeys } from '../../db/schema/index.js';
import { conflict } from '../../lib/errors.js';
import type { SecretBox } from '../../lib/secret-box.js';

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

/** How an answer is kept for replay: as it is, or sealed when it holds a secret shown once. */
export interface AnswerKeeping {
  keep(body: unknown): unknown;
  /** Throws when the kept answer cannot be given back. */
  giveBack(kept: unknown): unknown;
}

const keptAsIs: AnswerKeeping = { keep: (body) => body, giveBack: (kept) => kept };

/**
 * For answers that hold a new virtual key or signing secret: a replay must give the caller the secret it may never
 * have received, but the idempotency table (a backup, a replica) must not hold it readable for IDEMPOTENCY_TTL_HOURS.
 */
export function keptSealed(box: SecretBox): AnswerKeeping {
  return {
    keep: (body) => ({ sealed: box.seal(JSON.stringify(body)) }),
    giveBack: (kept) => {
      const opened = typeof (kept as { sealed?: unknown })?.sealed === 'string' ? box.open((kept as { sealed: string }).sealed) : undefined;
      if (opened === undefined) {
        throw conflict(
          'the answer to this Idempotency-Key held a secret that can no longer be read (the instance secret changed); send the request with a new key',
          'idempotency_answer_unreadable',
        );
      }
      return JSON.parse(opened);
    },
  };
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

const whereClaim = (claim: IdempotencyClaim) => and(eq(idempotencyKeys.scope, claim.scope), eq(idempotencyKeys.key, claim.key));

/**
 * Claims the key, or returns the stored answer to replay. An expired key is free again; the same key with a
 * different request, or while its first request is still running, is a conflict.
 */
async function claim(
  db: DbOrTx,
  claim: IdempotencyClaim,
  ttlHours: number,
  keeping: AnswerKeeping,
  timeoutSeconds: number | null = null,
): Promise<StoredResponse | null> {
  await db.delete(idempotencyKeys).where(and(whereClaim(claim), lt(idempotencyKeys.expiresAt, sql`now()`)));
  const claimed = await db
    .insert(idempotencyKeys)
    .values({ ...claim, expiresAt: sql`now() + make_interval(hours => ${ttlHours})`, timeoutSeconds })
    .onConflictDoNothing()
    .returning({ key: idempotencyKeys.key });
  if (claimed.length > 0) return null;
  const [existing] = await db.select().from(idempotencyKeys).where(whereClaim(claim));
  if (!existing) throw conflict('Idempotency-Key is being reused concurrently; retry', 'idempotency_key_in_progress');
  if (existing.requestHash !== claim.requestHash) {
    throw conflict('Idempotency-Key was already used with a different request', 'idempotency_key_reused');
  }
  if (existing.status !== 'completed') {
    throw conflict('a request with this Idempotency-Key is still in progress', 'idempotency_key_in_progress');
  }
  return { status: existing.responseStatus!, body: keeping.giveBack(existing.responseBody) };
}

async function store(db: DbOrTx, claim: IdempotencyClaim, response: StoredResponse, keeping: AnswerKeeping): Promise<void> {
  await db
    .update(idempotencyKeys)
    .set({ status: 'completed', responseStatus: response.status, responseBody: keeping.keep(response.body) })
    .where(whereClaim(claim));
}

/**
 * For work that fits in one transaction: the claim is taken in the same transaction as the work, so an error
 * leaves no claim behind, and a concurrent retry waits on the claim's row until the first commits and then
 * replays its stored answer.
 */
export async function runIdempotent(
  db: Database,
  idempotency: IdempotencyClaim,
  ttlHours: number,
  work: (tx: Transaction) => Promise<StoredResponse>,
  keeping: AnswerKeeping = keptAsIs,
): Promise<StoredResponse & { replayed: boolean }> {
  return db.transaction(async (tx) => {
    const replay = await claim(tx, idempotency, ttlHours, keeping);
    if (replay) return { ...replay, replayed: true };
    const response = await work(tx);
    await store(tx, idempotency, response, keeping);
    return { ...response, replayed: false };
  });
}

/**
 * For work that calls the upstream and must not hold a transaction open meanwhile: the claim is committed
 * first (a retry meanwhile gets 409), the answer stored after (or earlier, through `answered`), and a failure
 * frees the key for a new attempt.
 * A claim orphaned by a crash is freed by the job sweeper once `timeoutSeconds` passed since it was taken: the
 * claim records it, so an instance with a shorter setting never frees this one's claim while its work still runs.
 */
export async function runIdempotentLong(
  db: Database,
  idempotency: IdempotencyClaim,
  lifetime: { ttlHours: number; timeoutSeconds: number },
  work: (answered: (response: StoredResponse) => Promise<void>) => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  const replay = await claim(db, idempotency, lifetime.ttlHours, keptAsIs, lifetime.timeoutSeconds);
  if (replay) return { ...replay, replayed: true };
  let response: StoredResponse;
  try {
    // A stream stores its answer before its last frame, so a client retrying the moment it sees [DONE] replays.
    response = await work((early) => store(db, idempotency, early, keptAsIs));
  } catch (error) {
    await db.delete(idempotencyKeys).where(and(whereClaim(idempotency), eq(idempotencyKeys.status, 'in_progress')));
    throw error;
  }
  await store(db, idempotency, response, keptAsIs);
  return { ...response, replayed: false };
}

/**
 * Frees claims whose request died with its process (past the timeout each claim recorded), and forgets answers
 * past their lifetime. A claim without a recorded timeout (taken before it was recorded) waits for its expiry.
 */
export async function purgeIdempotencyKeys(db: DbOrTx): Promise<number> {
  const deleted = await db
    .delete(idempotencyKeys)
    .where(
      sql`${idempotencyKeys.expiresAt} < now()
       OR (${idempotencyKeys.status} = 'in_progress' AND ${idempotencyKeys.createdAt} < now() - make_interval(secs => ${idempotencyKeys.timeoutSeconds}))`,
    )
    .returning({ key: idempotencyKeys.key });
  return deleted.length;
}
