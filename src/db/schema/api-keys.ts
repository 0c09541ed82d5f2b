import { index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { limitColumns } from './limits.js';
import { teams } from './teams.js';

/** Virtual keys: only the SHA-256 of the secret and a short display prefix are stored. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id),
    name: text('name'),
    keyHash: text('key_hash').notNull().unique(),
    keyPrefix: text('key_prefix').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    ...limitColumns(),
  },
  (t) => [index('api_keys_team_idx').on(t.teamId)],
);
