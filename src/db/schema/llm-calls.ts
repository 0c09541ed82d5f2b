import { boolean, index, integer, jsonb, numeric, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { jobs } from './jobs.js';

export const llmCallStatus = pgEnum('llm_call_status', ['in_progress', 'success', 'failed', 'cancelled']);
export const usageSource = pgEnum('usage_source', ['upstream', 'estimated']);

export const llmCalls = pgTable(
  'llm_calls',
  {
    id: text('id').primaryKey(),
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id),
    teamId: text('team_id').notNull(),
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
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [index('llm_calls_job_idx').on(t.jobId), index('llm_calls_team_created_idx').on(t.teamId, t.createdAt)],
);
