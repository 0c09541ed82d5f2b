import { and, eq, isNull, or, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { apiKeys, teams } from '../../db/schema/index.js';
import { hashSecret } from './api-keys.models.js';

/**
 * Whether a secret that verifyTeamKey refused is a live (unrevoked, unexpired) key of a suspended team. Asked
 * only after a refusal, so accepted keys never pay for it; revoked and expired keys stay plain 401s.
 */
export async function isKeyOfSuspendedTeam(db: DbOrTx, secret: string): Promise<boolean> {
  const [row] = await db
    .select({ teamId: teams.id })
    .from(apiKeys)
    .innerJoin(teams, eq(teams.id, apiKeys.teamId))
    .where(
      and(
        eq(apiKeys.keyHash, hashSecret(secret)),
        isNull(apiKeys.revokedAt),
        or(isNull(apiKeys.expiresAt), sql`${apiKeys.expiresAt} > now()`),
        eq(teams.status, 'suspended'),
      ),
    );
  return row !== undefined;
}
