import { pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Values generated on first start and shared by every instance on the database: the master key's hash (the key
 * itself is printed once and never stored). Nothing here may be enough to act as an admin, so the JWT signing
 * key is kept elsewhere (see domain/admin/instance-secrets.ts).
 */
export const instanceSecrets = pgTable('instance_secrets', {
  name: text('name').primaryKey(),
  value: text('value').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
