import { asc, eq, inArray } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { modelGroups, teamModelGroups, teams } from '../../db/schema/index.js';
import { conflict, notFound, validationFailed } from '../../lib/errors.js';

export type TeamRow = typeof teams.$inferSelect;

export async function requireTeam(db: DbOrTx, teamId: string): Promise<TeamRow> {
  const [team] = await db.select().from(teams).where(eq(teams.id, teamId));
  if (!team) throw notFound('team', 'team_id');
  return team;
}

/** An archived (deleted) team keeps its history but takes no new keys, credits or status changes. */
export function assertNotArchived(team: Pick<TeamRow, 'id' | 'status'>): void {
  if (team.status === 'archived') throw conflict(`team ${team.id} is archived (deleted)`, 'team_archived');
}

export async function listTeamModelGroups(db: DbOrTx, teamId: string): Promise<string[]> {
  const rows = await db
    .select({ groupName: teamModelGroups.groupName })
    .from(teamModelGroups)
    .where(eq(teamModelGroups.teamId, teamId))
    .orderBy(asc(teamModelGroups.position));
  return rows.map((row) => row.groupName);
}

export async function assignModelGroups(db: DbOrTx, teamId: string, groupNames: string[]): Promise<void> {
  if (groupNames.length === 0) return;
  const known = await db
    .select({ name: modelGroups.name })
    .from(modelGroups)
    .where(inArray(modelGroups.name, groupNames));
  const missing = groupNames.filter((name) => !known.some((row) => row.name === name));
  if (missing.length > 0) throw validationFailed(`unknown model group: ${missing.join(', ')}`, 'model_groups', 'unknown_model_group');
  await db.insert(teamModelGroups).values(groupNames.map((groupName, position) => ({ teamId, groupName, position })));
}

/** The team's model groups become exactly these, in this order (the first is its default). */
export async function replaceModelGroups(db: DbOrTx, teamId: string, groupNames: string[]): Promise<void> {
  await db.delete(teamModelGroups).where(eq(teamModelGroups.teamId, teamId));
  await assignModelGroups(db, teamId, groupNames);
}
