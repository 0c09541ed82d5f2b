import { setupTeam } from '../../helpers/factories.js';
import { adminApi, api } from '../support.js';

/**
 * The simulation's teams: each budget mode twice, with small balances so they run out (top-ups come as
 * operations). One job_based team waives failed jobs when the server knows that setting (`waive_failed_jobs` in the
 * team response); on a server without it that variant is skipped and the team is a plain job_based one.
 */

export type BudgetMode = 'job_based' | 'consumption_tokens' | 'consumption_usd';

export interface SimTeam {
  label: string;
  teamId: string;
  key: string;
  group: string;
  models: string[];
  mode: BudgetMode;
  creditsPerJob: number;
  tokensPerCredit: number | null;
  creditsPerDollar: string | null;
  waiveFailedJobs: boolean;
}

interface TeamSpec {
  label: string;
  mode: BudgetMode;
  credits: number;
  models: string[];
  creditsPerJob?: number;
  tokensPerCredit?: number;
  creditsPerDollar?: string;
  waive?: boolean;
}

// Balances last a few dozen jobs or a handful of reserved calls (a consumption call reserves its prompt bound plus
// its max_tokens, 4096 by default, at the team's rate): teams run out, and top-ups bring them back.
const SPECS: TeamSpec[] = [
  { label: 'jobs-1', mode: 'job_based', credits: 25, models: ['sim-small', 'sim-large'] },
  { label: 'jobs-2-waive', mode: 'job_based', credits: 30, creditsPerJob: 2, models: ['sim-small', 'sim-large'], waive: true },
  { label: 'tokens-1000', mode: 'consumption_tokens', credits: 40, tokensPerCredit: 1000, models: ['sim-small', 'sim-large'] },
  { label: 'tokens-250', mode: 'consumption_tokens', credits: 60, tokensPerCredit: 250, models: ['sim-small', 'sim-large'] },
  { label: 'usd-100', mode: 'consumption_usd', credits: 40, creditsPerDollar: '100', models: ['sim-small', 'sim-large'] },
  { label: 'usd-400', mode: 'consumption_usd', credits: 60, creditsPerDollar: '400', models: ['sim-large', 'sim-small'] },
];

export interface TeamsSetup {
  teams: SimTeam[];
  /** The server reports `waive_failed_jobs` on teams (the waiving variant runs). */
  waiveSupported: boolean;
}

export async function setupTeams(baseUrl: string): Promise<TeamsSetup> {
  const admin = adminApi(baseUrl);
  let waiveSupported = false;
  const teams: SimTeam[] = [];
  for (const spec of SPECS) {
    const setup = await setupTeam(admin, {
      credits: spec.credits,
      models: spec.models,
      team: {
        budget_mode: spec.mode,
        ...(spec.creditsPerJob !== undefined && { credits_per_job: spec.creditsPerJob }),
        ...(spec.tokensPerCredit !== undefined && { tokens_per_credit: spec.tokensPerCredit }),
        ...(spec.creditsPerDollar !== undefined && { credits_per_dollar: spec.creditsPerDollar }),
      },
    });
    const team = await api(baseUrl, 'GET', `/api/teams/${setup.teamId}`);
    if (team.status !== 200) throw new Error(`GET team ${setup.teamId}: ${team.status} ${JSON.stringify(team.body)}`);
    let waive = false;
    if (spec.waive && 'waive_failed_jobs' in team.body) {
      waiveSupported = true;
      const patched = await api(baseUrl, 'PATCH', `/api/credits/teams/${setup.teamId}/budget-mode`, {
        body: { budget_mode: spec.mode, waive_failed_jobs: true },
      });
      if (patched.status !== 200) throw new Error(`setting waive_failed_jobs: ${patched.status} ${JSON.stringify(patched.body)}`);
      const after = await api(baseUrl, 'GET', `/api/teams/${setup.teamId}`);
      if (after.body?.waive_failed_jobs !== true) throw new Error(`waive_failed_jobs did not stick: ${JSON.stringify(after.body)}`);
      waive = true;
    }
    teams.push({
      label: spec.label,
      teamId: setup.teamId,
      key: setup.key,
      group: setup.group,
      models: spec.models,
      mode: spec.mode,
      creditsPerJob: team.body.credits_per_job,
      tokensPerCredit: team.body.tokens_per_credit,
      creditsPerDollar: team.body.credits_per_dollar,
      waiveFailedJobs: waive,
    });
  }
  return { teams, waiveSupported };
}
