import { describe, expect, it } from 'vitest';
import { consumptionOf, jobChargeFor, type BillableCall, type FinalJobStatus } from '../../../src/domain/billing/billing-policy.models.js';
import { DEFAULT_BUDGET, type BudgetSettings } from '../../../src/domain/billing/billing-settings.models.js';

const jobBased: BudgetSettings = { ...DEFAULT_BUDGET, creditsPerJob: 2 };
const tokens: BudgetSettings = { ...DEFAULT_BUDGET, budgetMode: 'consumption_tokens', tokensPerCredit: 100 };
const call = (delivered: boolean, totalTokens = 250, extra: Partial<BillableCall> = {}): BillableCall => ({
  delivered,
  totalTokens,
  costUsd: '0',
  usageSource: 'upstream',
  reservedMicro: 0,
  ...extra,
});

describe('what a job is charged when it ends (README "How billing works")', () => {
  const statuses: FinalJobStatus[] = ['completed', 'failed', 'cancelled', 'expired'];

  it.each(statuses)('%s, nothing delivered: free in every mode', (status) => {
    for (const settings of [jobBased, tokens]) {
      expect(jobChargeFor(settings, status, consumptionOf([]))).toBe(0);
      expect(jobChargeFor(settings, status, consumptionOf([call(false), call(false)]))).toBe(0);
    }
  });

  it.each(statuses)('%s, output delivered: the job price (job_based) or the usage of the delivered calls', (status) => {
    const calls = [call(true, 250), call(false, 1_000), call(true, 100)];
    expect(jobChargeFor(jobBased, status, consumptionOf(calls))).toBe(2_000_000);
    expect(jobChargeFor(tokens, status, consumptionOf(calls))).toBe(3_500_000);
  });

  it('waive_failed_jobs makes a failed job free, and nothing else', () => {
    const calls = [call(true)];
    for (const settings of [jobBased, tokens].map((s) => ({ ...s, waiveFailedJobs: true }))) {
      expect(jobChargeFor(settings, 'failed', consumptionOf(calls))).toBe(0);
      for (const status of ['completed', 'cancelled', 'expired'] as const) expect(jobChargeFor(settings, status, consumptionOf(calls))).toBeGreaterThan(0);
    }
  });

  it('a call whose usage is unknown (its instance died) is billed at its reservation in the consumption modes', () => {
    const abandoned = call(true, 5_000, { usageSource: 'reserved', reservedMicro: 7_000_000 });
    expect(jobChargeFor(tokens, 'expired', consumptionOf([abandoned, call(true, 100)]))).toBe(8_000_000);
    expect(jobChargeFor(jobBased, 'expired', consumptionOf([abandoned]))).toBe(2_000_000);
  });
});
