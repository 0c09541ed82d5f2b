import { OrganizationParams, TeamParams, Usage, UsageQuery } from '../../contracts/index.js';
import { getOrganizationUsage, getTeamUsage } from '../../domain/jobs/usage.service.js';
import { defineRoute } from '../route.js';

export const usageRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/teams/{team_id}/usage',
    auth: 'team_or_admin',
    summary: "A team's jobs, calls, tokens, cost and credits over a time range, by job type and by model",
    tags: ['Usage'],
    params: TeamParams,
    query: UsageQuery,
    response: { schema: Usage, description: 'usage of jobs created in [from, to)' },
    errors: [404],
    handler: ({ ctx, params, query }) => getTeamUsage(ctx, params.team_id, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/organizations/{organization_id}/usage',
    auth: 'admin',
    summary: "An organization's usage, also by team",
    tags: ['Usage'],
    params: OrganizationParams,
    query: UsageQuery,
    response: { schema: Usage, description: 'usage of jobs created in [from, to)' },
    errors: [404],
    handler: ({ ctx, params, query }) => getOrganizationUsage(ctx, params.organization_id, query),
  }),
];
