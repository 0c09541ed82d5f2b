/**
 * What a job is charged when it ends: the policy table of README "How billing works". Billing follows consumption:
 * what a caller reports (a status, a disconnect, a timeout) never decides what it pays, what its calls delivered
 * does. The one exception is the operator's: a team that waives failed jobs pays nothing for a job ended `failed`
 * (never for a cancelled, disconnected or expired one).
 */
import type { JobStatus } from '../../contracts/index.js';
import type { BudgetSettings } from './billing-settings.models.js';
import { jobChargeMicro, usdToPico, type JobUsage } from './pricing.models.js';

export type FinalJobStatus = Exclude<JobStatus, 'pending' | 'in_progress'>;

/** What a job's calls consumed: whether any delivered output, and the usage of those that did. */
export interface JobConsumption {
  delivered: boolean;
  usage: JobUsage;
  /** Reservations of calls whose usage is unknown (their instance died): billed as reserved, in the consumption modes. */
  reservedMicro: number;
}

export interface BillableCall {
  delivered: boolean;
  totalTokens: number;
  costUsd: string;
  usageSource: 'upstream' | 'estimated' | 'reserved' | null;
  reservedMicro: number;
}

/** Only calls that delivered output count: an upstream error before the first byte, a refusal or a cancel before the first token is free. */
export function consumptionOf(calls: Iterable<BillableCall>): JobConsumption {
  const consumption: JobConsumption = { delivered: false, usage: { totalTokens: 0, costPico: 0n }, reservedMicro: 0 };
  for (const call of calls) {
    if (!call.delivered) continue;
    consumption.delivered = true;
    if (call.usageSource === 'reserved') {
      consumption.reservedMicro += call.reservedMicro;
      continue;
    }
    consumption.usage.totalTokens += call.totalTokens;
    consumption.usage.costPico += usdToPico(call.costUsd);
  }
  return consumption;
}

/** The charge in micro-credits; the settle statement lowers it to what the team has if it has less. */
export function jobChargeFor(settings: BudgetSettings, status: FinalJobStatus, consumption: JobConsumption): number {
  if (!consumption.delivered) return 0;
  if (status === 'failed' && settings.waiveFailedJobs) return 0;
  const usageMicro = jobChargeMicro(settings, consumption.usage);
  return settings.budgetMode === 'job_based' ? usageMicro : usageMicro + consumption.reservedMicro;
}
