import { AppError } from '../../lib/errors.js';

/** The refusals of billing, each with the code clients match on. */

export const insufficientCredits = (message: string) => new AppError('insufficient_credits', message, { reason: 'insufficient_credits' });

/** job_based: the job's price bought this many calls or tokens; a new job is needed. */
export const jobLimitReached = (message: string) => new AppError('conflict', message, { reason: 'job_limit_reached' });

export const modelUnpriced = (model: string) =>
  new AppError('validation_failed', `model ${model} has no price, so its use cannot be billed in consumption_usd; an admin must set one (PUT /api/model-prices/${model})`, {
    reason: 'model_unpriced',
    param: 'model',
  });

export const callsInProgress = (jobId: string) =>
  new AppError('conflict', `job ${jobId} has a call in progress; complete it after the call ends`, { reason: 'calls_in_progress' });

export const jobNotOpen = (jobId: string, status: string) => new AppError('conflict', `job ${jobId} is ${status}; create a new job`, { reason: 'job_not_open' });
