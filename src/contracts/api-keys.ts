import { z } from 'zod';
import { Timestamp } from './common.js';
import { Limits, LimitsInput } from './limits.js';

export const CreateApiKeyRequest = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    expires_at: z.iso
      .datetime({ offset: true })
      .refine((value) => Date.parse(value) > Date.now(), 'must be in the future')
      .optional(),
    limits: LimitsInput.optional().meta({ description: "this key's own limits, on top of its team's" }),
  })
  .meta({ id: 'CreateApiKeyRequest', example: { name: 'backend', limits: { requests_per_minute: 60 } } });
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequest>;

export const UpdateApiKeyRequest = z
  .strictObject({
    name: z.string().trim().min(1).max(200).nullable().optional(),
    limits: LimitsInput.optional(),
  })
  .meta({ id: 'UpdateApiKeyRequest', example: { limits: { requests_per_minute: 120, max_concurrent_calls: null } } });
export type UpdateApiKeyRequest = z.infer<typeof UpdateApiKeyRequest>;

export const ApiKey = z
  .object({
    key_id: z.string(),
    team_id: z.string(),
    name: z.string().nullable(),
    key_prefix: z.string().meta({ description: 'the first characters of the key, to recognise it' }),
    status: z.enum(['active', 'revoked', 'expired']),
    created_at: Timestamp,
    expires_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
    last_used_at: Timestamp.nullable(),
    limits: Limits,
  })
  .meta({ id: 'ApiKey' });
export type ApiKey = z.infer<typeof ApiKey>;

export const CreatedApiKey = ApiKey.extend({
  virtual_key: z.string().meta({ description: 'the secret key, shown only in this response' }),
}).meta({ id: 'CreatedApiKey' });
export type CreatedApiKey = z.infer<typeof CreatedApiKey>;

export const KeyParams = z.strictObject({ key_id: z.string().regex(/^key_[a-z0-9]{21}$/, 'not a key id') });
