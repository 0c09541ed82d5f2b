import { asc, count, eq, gt } from 'drizzle-orm';
import type { CreateOrganizationRequest, Organization } from '../../contracts/index.js';
import { sqlState, UNIQUE_VIOLATION } from '../../db/client.js';
import { organizations, teams } from '../../db/schema/index.js';
import { conflict, notFound } from '../../lib/errors.js';
import type { ServiceContext } from '../context.js';

type OrganizationRow = typeof organizations.$inferSelect;

export async function createOrganization(ctx: ServiceContext, input: CreateOrganizationRequest): Promise<Organization> {
  try {
    const [row] = await ctx.db
      .insert(organizations)
      .values({ id: input.organization_id, name: input.name, metadata: input.metadata ?? {} })
      .returning();
    return presentOrganization(row!, 0);
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) {
      throw conflict(`organization ${input.organization_id} already exists`, 'already_exists');
    }
    throw error;
  }
}

export async function getOrganization(ctx: ServiceContext, organizationId: string): Promise<Organization> {
  const [row] = await ctx.db.select().from(organizations).where(eq(organizations.id, organizationId));
  if (!row) throw notFound('organization', 'organization_id');
  const [teamCount] = await ctx.db.select({ n: count() }).from(teams).where(eq(teams.organizationId, organizationId));
  return presentOrganization(row, teamCount?.n ?? 0);
}

export async function listOrganizations(ctx: ServiceContext, query: { limit: number; cursor?: string | undefined }) {
  const rows = await ctx.db
    .select({ organization: organizations, teamCount: count(teams.id) })
    .from(organizations)
    .leftJoin(teams, eq(teams.organizationId, organizations.id))
    .where(query.cursor ? gt(organizations.id, query.cursor) : undefined)
    .groupBy(organizations.id)
    .orderBy(asc(organizations.id))
    .limit(query.limit + 1);
  const pageRows = rows.slice(0, query.limit);
  const hasMore = rows.length > query.limit;
  return {
    data: pageRows.map((row) => presentOrganization(row.organization, row.teamCount)),
    has_more: hasMore,
    next_cursor: hasMore ? (pageRows.at(-1)?.organization.id ?? null) : null,
  };
}

function presentOrganization(row: OrganizationRow, teamCount: number): Organization {
  return {
    organization_id: row.id,
    name: row.name,
    metadata: row.metadata,
    team_count: teamCount,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
