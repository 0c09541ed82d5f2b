import { z } from 'zod';

const limit = (description: string) => z.number().int().min(1).max(1_000_000_000).nullable().optional().meta({ description });

/** Limits of a team or of a key, as an admin sets them: null removes one, an omitted field keeps its value. */
export const LimitsInput = z
  .strictObject({
    requests_per_minute: limit('model calls per minute (each call of create-and-call, llm-call, /v1/chat/completions, the queue)'),
    tokens_per_minute: limit("tokens per minute, each call counted at its worst case (prompt bound + completion limit) until it ends, then at what it used"),
    max_concurrent_jobs: limit('open jobs at once (one-shot requests included)'),
    max_concurrent_calls: limit('model calls in flight at once, streamed or not'),
  })
  .meta({ id: 'LimitsInput', example: { requests_per_minute: 600, max_concurrent_calls: 20 } });
export type LimitsInput = z.infer<typeof LimitsInput>;

export const Limits = z
  .object({
    requests_per_minute: z.number().int().nullable(),
    tokens_per_minute: z.number().int().nullable(),
    max_concurrent_jobs: z.number().int().nullable(),
    max_concurrent_calls: z.number().int().nullable(),
  })
  .meta({ id: 'Limits', description: 'null: no limit. Over a limit a request gets 429 with Retry-After.' });
export type Limits = z.infer<typeof Limits>;
