import { boolean, index, jsonb, pgEnum, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { jobs } from './jobs.js';

export const queueStatus = pgEnum('queue_status', ['queued', 'processing', 'completed', 'error', 'cancelled']);

/** Calls submitted to run server-side, streamed or cancelled later (the queue API). */
export const queueRequests = pgTable(
  'queue_requests',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id').notNull(),
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id),
    /** The item created its job (no job_id given) and so completes it. */
    ownsJob: boolean('owns_job').notNull(),
    status: queueStatus('status').notNull().default('queued'),
    model: text('model').notNull(),
    request: jsonb('request').$type<Record<string, unknown>>().notNull(),
    callId: text('call_id'),
    error: text('error'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [index('queue_requests_open_idx').on(t.status, t.createdAt)],
);
