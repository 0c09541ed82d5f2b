import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgEnum, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

export const idempotencyStatus = pgEnum('idempotency_status', ['in_progress', 'completed']);

/** Stored answers for `Idempotency-Key`, scoped per caller so two teams can never see each other's. */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    scope: text('scope').notNull(),
    key: text('key').notNull(),
    requestHash: text('request_hash').notNull(),
    status: idempotencyStatus('status').notNull().default('in_progress'),
    responseStatus: integer('response_status'),
    responseBody: jsonb('response_body'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    /**
     * A claim committed before its request's work (one that calls a model) still in progress this long after
     * `created_at` belongs to a request that died, and is freed. Recorded by the instance that claimed it, so every
     * instance's sweeper frees it alike; null when the claim commits with its answer (never seen in progress).
     */
    timeoutSeconds: integer('timeout_seconds'),
  },
  (t) => [
    primaryKey({ columns: [t.scope, t.key] }),
    index('idempotency_keys_expires_idx').on(t.expiresAt),
    index('idempotency_keys_in_progress_idx').on(t.createdAt).where(sql`${t.status} = 'in_progress'`),
  ],
);
