import { integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

export const adminUsers = pgTable('admin_users', {
  id: text('id').primaryKey(),
  email: text('email').notNull().unique(),
  passwordHash: text('password_hash').notNull(),
  createdBy: text('created_by').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
  // Login throttling lives on the account row so that every instance sees the same streak and lock: an attacker
  // spreading guesses over instances gets no more of them. Attempts are counted before the password is checked.
  failedLoginAttempts: integer('failed_login_attempts').notNull().default(0),
  loginLockedUntil: timestamp('login_locked_until', { withTimezone: true }),
});
