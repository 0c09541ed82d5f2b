import { z } from 'zod';
import { ChatCompletion, ChatParams } from './chat.js';
import { Credits, Metadata, Slug, Timestamp } from './common.js';

const JobType = z.string().trim().min(1).max(100);
const UserId = z.string().min(1).max(256);

export const JobStatus = z.enum(['pending', 'in_progress', 'completed', 'failed', 'cancelled', 'expired']);
export type JobStatus = z.infer<typeof JobStatus>;

export const CreateJobRequest = z
  .strictObject({ team_id: Slug, job_type: JobType, user_id: UserId.optional(), metadata: Metadata.optional() })
  .meta({ id: 'CreateJobRequest', example: { team_id: 'acme-support', job_type: 'ticket_reply', user_id: 'user-42', metadata: { ticket: 'T-1001' } } });
export type CreateJobRequest = z.infer<typeof CreateJobRequest>;

export const CreateJobResponse = z
  .object({
    job_id: z.string(),
    status: z.literal('pending'),
    created_at: Timestamp,
    credits_reserved: Credits.meta({ description: 'credits held for this job until it completes' }),
  })
  .meta({ id: 'CreateJobResponse' });
export type CreateJobResponse = z.infer<typeof CreateJobResponse>;

export const JobParams = z.strictObject({ job_id: z.string().regex(/^job_[a-z0-9]{21}$/, 'not a job id') });

export const LlmCallSummary = z
  .object({
    call_id: z.string(),
    status: z.enum(['in_progress', 'success', 'failed', 'cancelled']),
    streamed: z.boolean(),
    model_requested: z.string(),
    model_used: z.string().nullable(),
    response_content: z.string().nullable(),
    tool_calls: z.array(z.unknown()).nullable(),
    finish_reason: z.string().nullable(),
    prompt_tokens: z.number().int(),
    completion_tokens: z.number().int(),
    total_tokens: z.number().int(),
    usage_source: z
      .enum(['upstream', 'estimated', 'reserved'])
      .nullable()
      .meta({ description: 'upstream: reported by the upstream; estimated: counted by creditgate; reserved: unknown (its instance died), billed at its reservation' }),
    cost_usd: z.number(),
    delivered: z.boolean().meta({ description: 'the upstream produced output for this call: what makes it billable' }),
    max_tokens: z.number().int().nullable().meta({ description: 'the completion limit sent upstream (the one asked for, lowered to what the budget covered)' }),
    latency_ms: z.number().int().nullable(),
    ttft_ms: z.number().int().nullable(),
    error: z.string().nullable(),
    created_at: Timestamp,
    completed_at: Timestamp.nullable(),
  })
  .meta({ id: 'LlmCall' });
export type LlmCallSummary = z.infer<typeof LlmCallSummary>;

export const JobCosts = z
  .object({
    total_calls: z.number().int(),
    successful_calls: z.number().int(),
    failed_calls: z.number().int(),
    total_tokens: z.number().int(),
    total_cost_usd: z.number(),
    credits_charged: Credits,
    credit_applied: z.boolean().meta({ description: 'true once the job was settled with a charge' }),
    credits_remaining: Credits.meta({ description: "the team's available credits now" }),
  })
  .meta({ id: 'JobCosts' });
export type JobCosts = z.infer<typeof JobCosts>;

export const Job = z
  .object({
    job_id: z.string(),
    team_id: z.string(),
    job_type: z.string(),
    user_id: z.string().nullable(),
    status: JobStatus,
    metadata: Metadata,
    error_message: z.string().nullable(),
    credits_reserved: Credits,
    created_at: Timestamp,
    updated_at: Timestamp,
    completed_at: Timestamp.nullable(),
    costs: JobCosts,
    calls: z.array(LlmCallSummary),
  })
  .meta({ id: 'Job' });
export type Job = z.infer<typeof Job>;

export const CompleteJobRequest = z
  .strictObject({
    status: z.enum(['completed', 'failed']),
    metadata: Metadata.optional(),
    error_message: z.string().max(4000).optional(),
  })
  .meta({ id: 'CompleteJobRequest', example: { status: 'completed', metadata: { rating: 5 } } });
export type CompleteJobRequest = z.infer<typeof CompleteJobRequest>;

export const CompleteJobResponse = z
  .object({
    job_id: z.string(),
    status: JobStatus,
    completed_at: Timestamp,
    costs: JobCosts,
    calls: z.array(LlmCallSummary),
  })
  .meta({ id: 'CompleteJobResponse' });
export type CompleteJobResponse = z.infer<typeof CompleteJobResponse>;

export const LlmCallResponse = z
  .object({
    call_id: z.string(),
    response: ChatCompletion,
    metadata: z.object({
      job_id: z.string(),
      model_requested: z.string(),
      model_used: z.string(),
      prompt_tokens: z.number().int(),
      completion_tokens: z.number().int(),
      total_tokens: z.number().int(),
      cost_usd: z.number(),
      max_tokens: z.number().int().meta({ description: 'the completion limit the call was sent with' }),
      latency_ms: z.number().int(),
    }),
  })
  .meta({ id: 'LlmCallResponse' });
export type LlmCallResponse = z.infer<typeof LlmCallResponse>;

export const CreateAndCallRequest = z
  .strictObject({
    team_id: Slug,
    job_type: JobType,
    user_id: UserId.optional(),
    job_metadata: Metadata.optional(),
    ...ChatParams,
  })
  .meta({ id: 'CreateAndCallRequest', example: { team_id: 'acme-support', job_type: 'chat', messages: [{ role: 'user', content: 'Hello!' }] } });
export type CreateAndCallRequest = z.infer<typeof CreateAndCallRequest>;

export const CreateAndCallResponse = LlmCallResponse.extend({
  job_id: z.string(),
  status: JobStatus,
  costs: JobCosts,
}).meta({ id: 'CreateAndCallResponse' });
export type CreateAndCallResponse = z.infer<typeof CreateAndCallResponse>;

/** A calendar month (UTC), e.g. 2026-11: the same as from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z. */
export const Period = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month, YYYY-MM')
  .meta({ description: 'a calendar month (UTC), YYYY-MM; instead of from and to', example: '2026-11' });

export const UsageQuery = z
  .strictObject({
    from: z.iso.datetime({ offset: true }).optional().meta({ description: 'inclusive; default 30 days ago' }),
    to: z.iso.datetime({ offset: true }).optional().meta({ description: 'exclusive; default now' }),
    period: Period.optional(),
  })
  .refine((query) => !(query.period && (query.from || query.to)), { message: 'give either period or from/to', path: ['period'] });

const UsageTotals = z.object({
  jobs: z.number().int(),
  calls: z.number().int(),
  total_tokens: z.number().int(),
  cost_usd: z.number(),
  credits_charged: Credits,
});

export const Usage = z
  .object({
    from: Timestamp,
    to: Timestamp,
    totals: UsageTotals,
    by_job_type: z.array(UsageTotals.extend({ job_type: z.string() })),
    by_model: z.array(UsageTotals.omit({ jobs: true, credits_charged: true }).extend({ model: z.string() })),
    by_team: z.array(UsageTotals.extend({ team_id: z.string() })).optional(),
  })
  .meta({ id: 'Usage' });
export type Usage = z.infer<typeof Usage>;

export const ModelPrice = z
  .object({ model_name: z.string(), input_usd_per_million: z.string(), output_usd_per_million: z.string(), updated_at: Timestamp })
  .meta({ id: 'ModelPrice' });
export type ModelPrice = z.infer<typeof ModelPrice>;

const UsdRate = z
  .union([z.number().min(0), z.string()])
  .transform((value) => String(value))
  .pipe(z.string().regex(/^\d{1,9}(\.\d{1,6})?$/, 'must be a non-negative decimal with at most 6 decimals'));

export const SetModelPriceRequest = z
  .strictObject({ input_usd_per_million: UsdRate, output_usd_per_million: UsdRate })
  .meta({ id: 'SetModelPriceRequest', example: { input_usd_per_million: '0.15', output_usd_per_million: '0.6' } });
export type SetModelPriceRequest = z.infer<typeof SetModelPriceRequest>;

export const QueueSubmitRequest = z
  .strictObject({
    ...ChatParams,
    model: z.string().min(1).max(256).meta({ description: 'a model group or model alias of the team' }),
    stream: z.boolean().optional().meta({ description: 'accepted for compatibility; queued calls always run streamed' }),
    provider: z.string().max(100).optional().meta({ description: 'recorded with the request; routing follows the model group' }),
    job_id: z.string().regex(/^job_[a-z0-9]{21}$/, 'not a job id').optional().meta({
      description: "an open job of the team to run the call in; omitted, the call gets a job of its own (type 'queue'), completed when it ends",
    }),
  })
  .meta({ id: 'QueueSubmitRequest', example: { model: 'fast', messages: [{ role: 'user', content: 'Summarise our refund policy' }], stream: true } });
export type QueueSubmitRequest = z.infer<typeof QueueSubmitRequest>;

export const QueueStatus = z.enum(['queued', 'processing', 'completed', 'error', 'cancelled']);

export const QueueSubmitResponse = z
  .object({ data: z.object({ queueId: z.string(), status: QueueStatus }) })
  .meta({ id: 'QueueSubmitResponse' });
export type QueueSubmitResponse = z.infer<typeof QueueSubmitResponse>;

export const QueueIdRequest = z
  .strictObject({ queueId: z.string().regex(/^q_[a-z0-9]{21}$/, 'not a queue id') })
  .meta({ example: { queueId: 'q_0mwtigioowedigq763hd0' } });
export const QueueParams = QueueIdRequest;

export const QueueItem = z
  .object({
    queueId: z.string(),
    status: QueueStatus,
    model: z.string(),
    jobId: z.string(),
    callId: z.string().nullable(),
    error: z.string().nullable(),
    createdAt: Timestamp,
    startedAt: Timestamp.nullable(),
    finishedAt: Timestamp.nullable(),
    result: z
      .object({ content: z.string().nullable(), finishReason: z.string().nullable(), toolCalls: z.array(z.unknown()).nullable(), totalTokens: z.number().int() })
      .nullable(),
  })
  .meta({ id: 'QueueItem' });
export type QueueItem = z.infer<typeof QueueItem>;
