import {
  Breakdown,
  BreakdownQuery,
  LowCreditsQuery,
  LowCreditTeams,
  Overview,
  OverviewQuery,
  TimeSeries,
  TimeSeriesQuery,
} from '../../contracts/index.js';
import { getBreakdown, getLowCreditTeams, getOverview, getTimeSeries } from '../../domain/reports/reports.service.js';
import { defineRoute } from '../route.js';

const tags = ['Reports'];

/** What the console's overview draws: summaries, time series and breakdowns, read from the hourly usage rollups. */
export const reportRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/reports/overview',
    auth: 'admin',
    summary: 'Credits outstanding and held; usage, cost, margin, error rate and latency percentiles today, over 7 and 30 days',
    tags,
    query: OverviewQuery,
    response: { schema: Overview, description: 'the overview' },
    handler: ({ ctx, query }) => getOverview(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/reports/timeseries',
    auth: 'admin',
    summary: 'Usage, cost, margin and latency by hour or day (all teams or one)',
    tags,
    query: TimeSeriesQuery,
    response: { schema: TimeSeries, description: 'one point per hour or day' },
    errors: [404],
    handler: ({ ctx, query }) => getTimeSeries(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/reports/breakdown',
    auth: 'admin',
    summary: 'Usage, cost and margin by team, model or job type, sorted (e.g. the top teams by credits charged)',
    tags,
    query: BreakdownQuery,
    response: { schema: Breakdown, description: 'one row per team, model or job type' },
    handler: ({ ctx, query }) => getBreakdown(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/reports/low-credits',
    auth: 'admin',
    summary: 'Active teams running low on credits, the lowest first',
    tags,
    query: LowCreditsQuery,
    response: { schema: LowCreditTeams, description: 'the teams' },
    handler: ({ ctx, query }) => getLowCreditTeams(ctx, query),
  }),
];
