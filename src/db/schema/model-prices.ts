import { numeric, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** USD per million tokens, exact decimals; admins edit them, migrations seed common models. */
export const modelPrices = pgTable('model_prices', {
  modelName: text('model_name').primaryKey(),
  inputUsdPerMillion: numeric('input_usd_per_million', { precision: 18, scale: 6 }).notNull(),
  outputUsdPerMillion: numeric('output_usd_per_million', { precision: 18, scale: 6 }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
