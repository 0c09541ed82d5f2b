import { z } from 'zod';

/** Ids chosen by admins (organization_id, team_id, group_name): safe in URLs and logs. */
export const Slug = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

export const ModelName = z
  .string()
  .regex(/^[A-Za-z0-9][\w./:@-]{0,127}$/, 'must be 1-128 characters of letters, digits and "._-/:@"');

export const Metadata = z.record(z.string(), z.unknown()).meta({ description: 'free-form JSON object' });

export const Timestamp = z.string().meta({ format: 'date-time', example: '2026-11-23T12:00:00.000Z' });

/** Credits are exact: stored as integer micro-credits, shown with at most six decimals. */
export const Credits = z.number().meta({ description: 'credits (up to 6 decimals, exact)', example: 100 });

export const Limit = z.coerce.number().int().min(1).max(200).default(50);

export const PageQuery = z.strictObject({
  limit: Limit,
  cursor: z.string().max(128).optional().meta({ description: 'the `next_cursor` of the previous page' }),
});

export const page = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), has_more: z.boolean(), next_cursor: z.string().nullable() });

export const ErrorBody = z
  .object({
    error: z.object({
      type: z.string().meta({ example: 'invalid_request_error' }),
      code: z.string().meta({ example: 'invalid_value' }),
      message: z.string(),
      param: z.string().nullable(),
      request_id: z.string().optional(),
    }),
  })
  .meta({ id: 'Error' });
export type ErrorBody = z.infer<typeof ErrorBody>;
