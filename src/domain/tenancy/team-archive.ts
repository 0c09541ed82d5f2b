import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Team } from '../../contracts/index.js';
import { afterCommit, withTransaction } from '../../db/client.js';
import { apiKeys, teams } from '../../db/schema/index.js';
import { conflict, notFound } from '../../lib/errors.js';
import type { ServiceContext } from '../context.js';
import { microToCredits } from '../ledger/ledger.models.js';
import { getTeam } from './teams.service.js';

/**
 * Deleting a team archives it: its keys are revoked, it leaves the lists and can never be resumed, and everything it
 * did (its ledger, which is append-only, its jobs and calls) is kept, as is its team_id. Refused while it has open
 * jobs (their holds are still moving) or credits (deduct them first, so the ledger says where they went). The balance
 * row is locked first: a job cannot open between the checks and the archive.
 */
export async function archiveTeam(ctx: ServiceContext, teamId: string): Promise<Team> {
  await withTransaction(ctx.db, async (tx) => {
    const balance = await tx.execute<{ balance_micro: string; status: string }>(sql`
      SELECT b.balance_micro::text AS balance_micro, t.status FROM credit_balances b JOIN teams t ON t.id = b.team_id
       WHERE b.team_id = ${teamId} FOR NO KEY UPDATE OF b`);
    const row = balance.rows[0];
    if (!row) throw notFound('team', 'team_id');
    if (row.status === 'archived') return;
    const open = await tx.execute<{ n: string }>(sql`
      SELECT count(*) AS n FROM jobs WHERE team_id = ${teamId} AND status IN ('pending', 'in_progress')`);
    const openJobs = Number(open.rows[0]!.n);
    if (openJobs > 0) throw conflict(`team ${teamId} has ${openJobs} open job(s): cancel them or let them finish first`, 'team_has_open_jobs');
    const credits = microToCredits(Number(row.balance_micro));
    if (credits > 0) {
      throw conflict(`team ${teamId} still has ${credits} credits: deduct them first (POST /api/credits/teams/${teamId}/deduct)`, 'team_has_credits');
    }
    await tx.update(teams).set({ status: 'archived', updatedAt: sql`now()` }).where(eq(teams.id, teamId));
    await tx.update(apiKeys).set({ revokedAt: sql`now()` }).where(and(eq(apiKeys.teamId, teamId), isNull(apiKeys.revokedAt)));
    await afterCommit(tx, () => ctx.caches.invalidate({ teamId }));
  });
  return getTeam(ctx, teamId);
}
