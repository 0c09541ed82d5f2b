import { and, asc, eq, isNull, lt, or, sql } from 'drizzle-orm';
import type { ApiKey, CreateApiKeyRequest, CreatedApiKey, UpdateApiKeyRequest } from '../../contracts/index.js';
import { withTransaction, type DbOrTx } from '../../db/client.js';
import { apiKeys, teams } from '../../db/schema/index.js';
import { notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, type Actor } from '../actor.js';
import { recordEvent } from '../webhooks/webhook-events.js';
import { changedLimits, NO_LIMITS, presentLimits } from '../limits/limits.models.js';
import { assertNotArchived, requireTeam } from '../tenancy/teams.repository.js';
import { displayPrefix, generateTeamKey, hashSecret, keyStatus } from './api-keys.models.js';
import { teamSuspended } from './api-keys.errors.js';
import { readThroughCache, type Caches } from '../caches.js';

type ApiKeyRow = typeof apiKeys.$inferSelect;

export async function createApiKey(ctx: ServiceContext, teamId: string, input: CreateApiKeyRequest): Promise<CreatedApiKey> {
  return withTransaction(ctx.db, async (tx) => {
    assertNotArchived(await requireTeam(tx, teamId));
    return issueApiKey(tx, teamId, actorLabel(ctx.actor), input);
  });
}

/** Creates a key; the secret is returned here once and only its hash is stored. */
export async function issueApiKey(db: DbOrTx, teamId: string, createdBy: string, input: CreateApiKeyRequest): Promise<CreatedApiKey> {
  const secret = generateTeamKey();
  const [row] = await db
    .insert(apiKeys)
    .values({
      id: newId('key'),
      teamId,
      name: input.name ?? null,
      keyHash: hashSecret(secret),
      keyPrefix: displayPrefix(secret),
      createdBy,
      expiresAt: input.expires_at ? new Date(input.expires_at) : null,
      ...changedLimits(NO_LIMITS, input.limits),
    })
    .returning();
  const key = presentApiKey(row!);
  await recordEvent(db, 'key.created', teamId, { team_id: teamId, key });
  return { ...key, virtual_key: secret };
}

/** A key's name and limits; its limits reach every instance with the key's next lookup (its cache entry is dropped). */
export async function updateApiKey(ctx: ServiceContext, keyId: string, input: UpdateApiKeyRequest): Promise<ApiKey> {
  const [current] = await ctx.db.select().from(apiKeys).where(eq(apiKeys.id, keyId));
  if (!current) throw notFound('key', 'key_id');
  const [row] = await ctx.db
    .update(apiKeys)
    .set({ ...(input.name !== undefined && { name: input.name }), ...changedLimits(current, input.limits) })
    .where(eq(apiKeys.id, keyId))
    .returning();
  await ctx.caches.invalidate({ keyId });
  return presentApiKey(row!);
}

export async function listApiKeys(ctx: ServiceContext, teamId: string): Promise<{ data: ApiKey[] }> {
  await requireTeam(ctx.db, teamId);
  const rows = await ctx.db.select().from(apiKeys).where(eq(apiKeys.teamId, teamId)).orderBy(asc(apiKeys.id));
  return { data: rows.map((row) => presentApiKey(row)) };
}

/** Revoking twice is harmless and answers the same; the revocation time is the first one. */
export async function revokeApiKey(ctx: ServiceContext, keyId: string): Promise<ApiKey> {
  const row = await withTransaction(ctx.db, async (tx) => {
    const revoked = await tx
      .update(apiKeys)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(apiKeys.id, keyId), isNull(apiKeys.revokedAt)))
      .returning();
    if (revoked[0]) await recordEvent(tx, 'key.revoked', revoked[0].teamId, { team_id: revoked[0].teamId, key: presentApiKey(revoked[0]) });
    const [current] = await tx.select().from(apiKeys).where(eq(apiKeys.id, keyId));
    if (!current) throw notFound('key', 'key_id');
    return current;
  });
  await ctx.caches.invalidate({ keyId });
  return presentApiKey(row);
}

/**
 * The team actor for a presented secret, or null when it is unknown, revoked, expired or its team archived; a live
 * key of a suspended team is refused with 403 team_suspended, so its owner asks an admin instead of rotating it.
 * Looked up by hash in one indexed query, so the secret itself is never compared or stored and an unknown secret
 * costs one lookup; recent answers come from the cache (a refusal is not cached: resuming a team takes effect at once).
 */
export async function verifyTeamKey(db: DbOrTx, caches: Caches, secret: string): Promise<Actor | null> {
  const keyHash = hashSecret(secret);
  const actor = await readThroughCache(caches.keys, db, keyHash, async (reader) => {
    const [row] = await reader
      .select({
        keyId: apiKeys.id,
        teamId: teams.id,
        organizationId: teams.organizationId,
        lastUsedAt: apiKeys.lastUsedAt,
        expiresAt: apiKeys.expiresAt,
        requestsPerMinute: apiKeys.requestsPerMinute,
        tokensPerMinute: apiKeys.tokensPerMinute,
        maxConcurrentJobs: apiKeys.maxConcurrentJobs,
        maxConcurrentCalls: apiKeys.maxConcurrentCalls,
        teamStatus: teams.status,
      })
      .from(apiKeys)
      .innerJoin(teams, eq(teams.id, apiKeys.teamId))
      .where(and(eq(apiKeys.keyHash, keyHash), isNull(apiKeys.revokedAt), or(isNull(apiKeys.expiresAt), sql`${apiKeys.expiresAt} > now()`)));
    // Thrown inside the load, so callers sharing this lookup are all refused alike.
    if (row?.teamStatus === 'suspended') throw teamSuspended();
    if (row?.teamStatus !== 'active') return undefined;
    await touchApiKey(reader, row.keyId, row.lastUsedAt);
    const { keyId, teamId, organizationId, requestsPerMinute, tokensPerMinute, maxConcurrentJobs, maxConcurrentCalls } = row;
    const keyLimits = { requestsPerMinute, tokensPerMinute, maxConcurrentJobs, maxConcurrentCalls };
    return { value: { kind: 'team' as const, teamId, organizationId, keyId, keyLimits }, until: row.expiresAt?.getTime() };
  });
  return actor ?? null;
}

const LAST_USED_RESOLUTION_MS = 60_000;

/** last_used_at is kept to the minute, so a busy key does not write on every request. */
async function touchApiKey(db: DbOrTx, keyId: string, lastUsedAt: Date | null): Promise<void> {
  if (lastUsedAt && Date.now() - lastUsedAt.getTime() < LAST_USED_RESOLUTION_MS) return;
  await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(
      and(
        eq(apiKeys.id, keyId),
        or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - make_interval(secs => ${LAST_USED_RESOLUTION_MS / 1000})`)),
      ),
    );
}

export function presentApiKey(row: ApiKeyRow): ApiKey {
  return {
    key_id: row.id,
    team_id: row.teamId,
    name: row.name,
    key_prefix: row.keyPrefix,
    status: keyStatus(row),
    created_at: row.createdAt.toISOString(),
    expires_at: row.expiresAt?.toISOString() ?? null,
    revoked_at: row.revokedAt?.toISOString() ?? null,
    last_used_at: row.lastUsedAt?.toISOString() ?? null,
    limits: presentLimits(row),
  };
}
