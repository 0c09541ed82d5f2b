import { z } from 'zod';
import { Metadata, Slug, Timestamp } from './common.js';

export const CreateOrganizationRequest = z
  .strictObject({
    organization_id: Slug,
    name: z.string().trim().min(1).max(200),
    metadata: Metadata.optional(),
  })
  .meta({ id: 'CreateOrganizationRequest', example: { organization_id: 'acme', name: 'Acme Inc.', metadata: { plan: 'pro' } } });
export type CreateOrganizationRequest = z.infer<typeof CreateOrganizationRequest>;

export const Organization = z
  .object({
    organization_id: z.string(),
    name: z.string(),
    metadata: Metadata,
    team_count: z.number().int(),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Organization' });
export type Organization = z.infer<typeof Organization>;

export const OrganizationParams = z.strictObject({ organization_id: Slug });
