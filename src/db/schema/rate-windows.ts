import { bigint, integer, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * What the instances together have admitted in one minute for one subject (`team:<id>` or `key:<id>`): each
 * instance claims chunks of the minute's budget here and spends them locally. Rows of past minutes are swept.
 */
export const rateWindows = pgTable(
  'rate_windows',
  {
    subject: text('subject').notNull(),
    windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
    requests: integer('requests').notNull().default(0),
    tokens: bigint('tokens', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.subject, t.windowStart] })],
);
