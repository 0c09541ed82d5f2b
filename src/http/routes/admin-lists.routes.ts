import {
  AdminSetupStatus,
  BalanceHistory,
  BalanceHistoryQuery,
  DeductCreditsRequest,
  DeductCreditsResponse,
  Job,
  JobListQuery,
  JobParams,
  JobSummary,
  LedgerExportQuery,
  OrganizationParams,
  OrganizationTeamsQuery,
  page,
  Team,
  TeamJobsQuery,
  TeamListQuery,
  TeamParams,
  TeamSummary,
  UpdateJobMetadataRequest,
} from '../../contracts/index.js';
import { assertTeamAccess } from '../../domain/actor.js';
import { adminUsersExist } from '../../domain/admin/admin-users.service.js';
import { listJobs, updateJobMetadata } from '../../domain/jobs/job-listing.js';
import { deductCredits, exportLedgerCsv, getBalanceHistory } from '../../domain/ledger/ledger-reports.js';
import { getOrganization } from '../../domain/tenancy/organizations.service.js';
import { archiveTeam } from '../../domain/tenancy/team-archive.js';
import { listTeams } from '../../domain/tenancy/team-listing.js';
import { defineRoute } from '../route.js';

/** The lists and edits the operator console needs: teams, jobs, deductions, ledger export and balance history. */
export const adminListRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/admin-users/exists',
    auth: 'public',
    summary: 'Whether any admin user exists yet (the console offers to create the first one when none does); nothing else',
    tags: ['Admin users'],
    response: { schema: AdminSetupStatus, description: 'a yes or no' },
    handler: ({ ctx }) => adminUsersExist(ctx),
  }),
  defineRoute({
    method: 'get',
    path: '/api/teams',
    auth: 'admin',
    summary: 'List teams with their balance, held credits, status, budget mode and last activity (search, filters, sort, keyset pages)',
    tags: ['Teams'],
    query: TeamListQuery,
    response: { schema: page(TeamSummary), description: 'one page of teams' },
    handler: ({ ctx, query }) => listTeams(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/organizations/{organization_id}/teams',
    auth: 'admin',
    summary: "List an organization's teams (same filters, sorts and pages as GET /api/teams)",
    tags: ['Organizations'],
    params: OrganizationParams,
    query: OrganizationTeamsQuery,
    response: { schema: page(TeamSummary), description: 'one page of teams' },
    errors: [404],
    handler: async ({ ctx, params, query }) => {
      await getOrganization(ctx, params.organization_id);
      return listTeams(ctx, { ...query, organization_id: params.organization_id });
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/api/teams/{team_id}',
    auth: 'admin',
    summary:
      'Delete a team: it is archived (keys revoked, out of the lists, never usable again; its ledger, jobs and calls are kept). Refused with 409 while it has open jobs or credits',
    tags: ['Teams'],
    params: TeamParams,
    response: { schema: Team, description: 'the archived team; deleting again answers the same' },
    errors: [404, 409],
    handler: ({ ctx, params }) => archiveTeam(ctx, params.team_id),
  }),
  defineRoute({
    method: 'get',
    path: '/api/jobs',
    auth: 'admin',
    summary: 'List jobs of every team, newest first (filters: team, status, job type, creation time; keyset pages)',
    tags: ['Jobs'],
    query: JobListQuery,
    response: { schema: page(JobSummary), description: 'one page of jobs' },
    errors: [404],
    handler: ({ ctx, query }) => listJobs(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/teams/{team_id}/jobs',
    auth: 'admin',
    summary: "List a team's jobs, newest first",
    tags: ['Jobs'],
    params: TeamParams,
    query: TeamJobsQuery,
    response: { schema: page(JobSummary), description: 'one page of jobs' },
    errors: [404],
    handler: ({ ctx, params, query }) => listJobs(ctx, { ...query, team_id: params.team_id }),
  }),
  defineRoute({
    method: 'patch',
    path: '/api/jobs/{job_id}/metadata',
    auth: 'team_or_admin',
    summary: "Merge keys into a job's metadata (null removes a key); a team key reaches only its own team's jobs",
    tags: ['Jobs'],
    params: JobParams,
    body: UpdateJobMetadataRequest,
    response: { schema: Job, description: 'the job' },
    errors: [404],
    handler: ({ ctx, params, body }) => updateJobMetadata(ctx, params.job_id, body),
  }),
  defineRoute({
    method: 'post',
    path: '/api/credits/teams/{team_id}/deduct',
    auth: 'admin',
    summary:
      'Take credits off a team with a reason (send an Idempotency-Key to retry safely); never more than it has available: 409 exceeds_available_credits says how much that is',
    tags: ['Credits'],
    params: TeamParams,
    body: DeductCreditsRequest,
    idempotent: 'transaction',
    response: { status: 201, schema: DeductCreditsResponse, description: 'the ledger entry (an adjustment) and the new balance' },
    errors: [404, 409],
    handler: ({ ctx, params, body }) => deductCredits(ctx, params.team_id, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/credits/teams/{team_id}/transactions.csv',
    auth: 'team_or_admin',
    summary: "A team's credit ledger as CSV, oldest first (filters: type, from/to or period)",
    tags: ['Credits'],
    params: TeamParams,
    query: LedgerExportQuery,
    response: {
      description: `CSV with a header line: ${['transaction_id', 'created_at', 'type', 'amount', 'held_change', 'balance_after', 'held_after', 'job_id', 'reason', 'actor'].join(', ')}`,
      contentType: 'text/csv',
    },
    errors: [404],
    handler: async ({ ctx, params, query, res }) => {
      assertTeamAccess(ctx.actor, params.team_id);
      const lines = exportLedgerCsv(ctx, params.team_id, query);
      // The first chunk (the header) comes after the team was found, so a 404 is still a JSON error.
      const first = await lines.next();
      res.status(200);
      res.setHeader('Content-Type', 'text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="${params.team_id}-ledger.csv"`);
      try {
        if (!first.done) res.write(first.value);
        for await (const chunk of lines) if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        res.end();
      } catch (error) {
        // Headers are gone: a cut answer is the only honest signal left.
        res.destroy(error as Error);
      }
      return undefined;
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/credits/teams/{team_id}/balance-history',
    auth: 'team_or_admin',
    summary: "A team's balance and held credits at the end of each day (UTC), with the credits that came in and went out",
    tags: ['Credits'],
    params: TeamParams,
    query: BalanceHistoryQuery,
    response: { schema: BalanceHistory, description: 'one point per day of the range' },
    errors: [404],
    handler: ({ ctx, params, query }) => {
      assertTeamAccess(ctx.actor, params.team_id);
      return getBalanceHistory(ctx, params.team_id, query);
    },
  }),
];
