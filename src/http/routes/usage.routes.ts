import { z } from 'zod';
import { ModelPrice, ModelName, OrganizationParams, SetModelPriceRequest, TeamParams, Usage, UsageQuery } from '../../contracts/index.js';
import { listModelPrices, setModelPrice } from '../../domain/billing/model-prices.service.js';
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
  defineRoute({
    method: 'get',
    path: '/api/model-prices',
    auth: 'admin',
    summary: 'The model price table (USD per million tokens) used to cost calls',
    tags: ['Model prices'],
    response: { schema: z.object({ data: z.array(ModelPrice) }), description: 'every price' },
    handler: ({ ctx }) => listModelPrices(ctx),
  }),
  defineRoute({
    method: 'put',
    path: '/api/model-prices/{model_name}',
    auth: 'admin',
    summary: "Set a model's price; calls are costed with the price at the time they end",
    tags: ['Model prices'],
    params: z.strictObject({ model_name: ModelName }),
    body: SetModelPriceRequest,
    response: { schema: ModelPrice, description: 'the price' },
    handler: ({ ctx, params, body }) => setModelPrice(ctx, params.model_name, body),
  }),
];
