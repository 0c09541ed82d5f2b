import { integer } from 'drizzle-orm/pg-core';

/** The limits a team or a key may carry; null is no limit. Columns shared by teams and api_keys. */
export const limitColumns = () => ({
  requestsPerMinute: integer('requests_per_minute'),
  tokensPerMinute: integer('tokens_per_minute'),
  maxConcurrentJobs: integer('max_concurrent_jobs'),
  maxConcurrentCalls: integer('max_concurrent_calls'),
});
