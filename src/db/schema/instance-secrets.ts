import { pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Secrets generated on first start and shared by every instance on the database: the master key's hash
 * (the key itself is printed once and never stored) and the admin JWT signing secret.
 */
export const instanceSecrets = pgTable('instance_secrets', {
  name: text('name').primaryKey(),
  value: text('value').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
