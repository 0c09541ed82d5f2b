import {
  AddCreditsRequest,
  AddCreditsResponse,
  CreditBalance,
  CreditTransaction,
  page,
  LedgerQuery,
  SetBudgetModeRequest,
  TeamParams,
} from '../../contracts/index.js';
import { assertTeamAccess } from '../../domain/actor.js';
import { addCredits, getCreditBalance } from '../../domain/ledger/ledger.service.js';
import { listLedger } from '../../domain/ledger/ledger-reports.js';
import { setBudgetMode } from '../../domain/tenancy/teams.service.js';
import { defineRoute } from '../route.js';

const tags = ['Credits'];

export const creditRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/credits/teams/{team_id}/balance',
    auth: 'team_or_admin',
    summary: "A team's balance, held credits and budget mode",
    tags,
    params: TeamParams,
    response: { schema: CreditBalance, description: 'the balance' },
    errors: [404],
    handler: ({ ctx, params }) => {
      assertTeamAccess(ctx.actor, params.team_id);
      return getCreditBalance(ctx, params.team_id);
    },
  }),
  defineRoute({
    method: 'post',
    path: '/api/credits/teams/{team_id}/add',
    auth: 'admin',
    summary: 'Add credits to a team, with a reason (send an Idempotency-Key to retry safely)',
    tags,
    params: TeamParams,
    body: AddCreditsRequest,
    idempotent: 'transaction',
    response: { status: 201, schema: AddCreditsResponse, description: 'the ledger entry and the new balance' },
    errors: [404, 409],
    handler: ({ ctx, params, body }) => addCredits(ctx, params.team_id, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/credits/teams/{team_id}/transactions',
    auth: 'team_or_admin',
    summary: "A team's credit ledger, newest first (filters: type, from, to)",
    tags,
    params: TeamParams,
    query: LedgerQuery,
    response: { schema: page(CreditTransaction), description: 'one page of ledger entries' },
    errors: [404],
    handler: ({ ctx, params, query }) => {
      assertTeamAccess(ctx.actor, params.team_id);
      return listLedger(ctx, params.team_id, query);
    },
  }),
  defineRoute({
    method: 'patch',
    path: '/api/credits/teams/{team_id}/budget-mode',
    auth: 'admin',
    summary: 'Set how completed jobs are charged',
    tags,
    params: TeamParams,
    body: SetBudgetModeRequest,
    response: { schema: CreditBalance, description: 'the balance with the new budget settings' },
    errors: [404, 409],
    handler: ({ ctx, params, body }) => setBudgetMode(ctx, params.team_id, body),
  }),
];
