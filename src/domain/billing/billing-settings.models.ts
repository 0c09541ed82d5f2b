import type { BudgetMode } from '../../contracts/index.js';
import { validationFailed } from '../../lib/errors.js';

/** How a team pays: its budget mode and rate, and the operator's choices that bound or waive what a job costs. */
export interface BudgetSettings {
  budgetMode: BudgetMode;
  creditsPerJob: number;
  tokensPerCredit: number | null;
  creditsPerDollar: string | null;
  waiveFailedJobs: boolean;
  maxCallsPerJob: number;
  maxTokensPerJob: number;
}

export interface BudgetChange {
  budget_mode?: BudgetMode | undefined;
  credits_per_job?: number | undefined;
  tokens_per_credit?: number | undefined;
  credits_per_dollar?: string | number | undefined;
  waive_failed_jobs?: boolean | undefined;
  max_calls_per_job?: number | undefined;
  max_tokens_per_job?: number | undefined;
}

const DECIMAL_RATE = /^\d{1,12}(\.\d{1,6})?$/;

/** Merges a change into the current settings; a consumption mode needs its rate, given now or earlier. */
export function resolveBudgetSettings(current: BudgetSettings, change: BudgetChange): BudgetSettings {
  const next: BudgetSettings = {
    budgetMode: change.budget_mode ?? current.budgetMode,
    creditsPerJob: change.credits_per_job ?? current.creditsPerJob,
    tokensPerCredit: change.tokens_per_credit ?? current.tokensPerCredit,
    creditsPerDollar: change.credits_per_dollar === undefined ? current.creditsPerDollar : String(change.credits_per_dollar),
    waiveFailedJobs: change.waive_failed_jobs ?? current.waiveFailedJobs,
    maxCallsPerJob: change.max_calls_per_job ?? current.maxCallsPerJob,
    maxTokensPerJob: change.max_tokens_per_job ?? current.maxTokensPerJob,
  };
  if (next.creditsPerDollar !== null && (!DECIMAL_RATE.test(next.creditsPerDollar) || Number(next.creditsPerDollar) <= 0)) {
    throw validationFailed('credits_per_dollar must be a positive decimal with at most 6 decimals', 'credits_per_dollar');
  }
  if (next.budgetMode === 'consumption_tokens' && next.tokensPerCredit === null) {
    throw validationFailed('budget_mode consumption_tokens needs tokens_per_credit', 'tokens_per_credit', 'missing_rate');
  }
  if (next.budgetMode === 'consumption_usd' && next.creditsPerDollar === null) {
    throw validationFailed('budget_mode consumption_usd needs credits_per_dollar', 'credits_per_dollar', 'missing_rate');
  }
  return next;
}

export const DEFAULT_BUDGET: BudgetSettings = {
  budgetMode: 'job_based',
  creditsPerJob: 1,
  tokensPerCredit: null,
  creditsPerDollar: null,
  waiveFailedJobs: false,
  maxCallsPerJob: 50,
  maxTokensPerJob: 200_000,
};
