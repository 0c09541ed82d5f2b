import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, jsonb, numeric, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { jobs } from './jobs.js';

export const llmCallStatus = pgEnum('llm_call_status', ['in_progress', 'success', 'failed', 'cancelled']);
/** upstream: reported by the upstream; estimated: counted here; reserved: unknown (its instance died), billed at its reservation. */
export const usageSource = pgEnum('usage_source', ['upstream', 'estimated', 'reserved']);

export const llmCalls = pgTable(
  'llm_calls',
  {
    id: text('id').primaryKey(),
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id),
    teamId: text('team_id').notNull(),
    keyId: text('key_id'),
    status: llmCallStatus('status').notNull().default('in_progress'),
    streamed: boolean('streamed').notNull(),
    modelRequested: text('model_requested').notNull(),
    modelUsed: text('model_used'),
    requestMessages: jsonb('request_messages').notNull(),
    requestParams: jsonb('request_params').$type<Record<string, unknown>>().notNull().default({}),
    responseContent: text('response_content'),
    toolCalls: jsonb('tool_calls'),
    finishReason: text('finish_reason'),
    promptTokens: integer('prompt_tokens').notNull().default(0),
    completionTokens: integer('completion_tokens').notNull().default(0),
    totalTokens: integer('total_tokens').notNull().default(0),
    usageSource: usageSource('usage_source'),
    costUsd: numeric('cost_usd', { precision: 24, scale: 12 }).notNull().default('0'),
    latencyMs: integer('latency_ms'),
    ttftMs: integer('ttft_ms'),
    error: text('error'),
    /** The upstream produced output for this call (content, tool calls or completion tokens): what makes it billable. */
    delivered: boolean('delivered').notNull().default(false),
    /** The completion limit sent upstream (the caller's, lowered to what the budget covers). */
    maxTokens: integer('max_tokens'),
    /** Upper bound of the prompt's tokens, reserved before the call. */
    promptBoundTokens: integer('prompt_bound_tokens').notNull().default(0),
    /** Micro-credits this call reserved in its job's hold while in flight (consumption modes). */
    reservedMicro: bigint('reserved_micro', { mode: 'number' }).notNull().default(0),
    /** Renewed by the instance running the call; a stale one means that instance died. */
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [
    index('llm_calls_job_idx').on(t.jobId),
    index('llm_calls_team_created_idx').on(t.teamId, t.createdAt),
    index('llm_calls_live_idx').on(t.heartbeatAt).where(sql`${t.status} = 'in_progress'`),
    index('llm_calls_team_live_idx').on(t.teamId).where(sql`${t.status} = 'in_progress'`),
  ],
);
