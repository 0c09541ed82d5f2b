import { z } from 'zod';
import { ModelName, Slug, Timestamp } from './common.js';

const GroupModel = z.strictObject({
  model_name: ModelName,
  priority: z.number().int().min(0).max(1000).meta({ description: 'lower is tried first' }),
});

const Models = z
  .array(GroupModel)
  .min(1)
  .max(20)
  .refine((models) => new Set(models.map((m) => m.model_name)).size === models.length, 'model_name must be unique within a group');

export const CreateModelGroupRequest = z
  .strictObject({
    group_name: Slug,
    display_name: z.string().trim().min(1).max(200).optional(),
    description: z.string().max(2000).optional(),
    models: Models,
  })
  .meta({ id: 'CreateModelGroupRequest', example: { group_name: 'fast', display_name: 'Fast models', models: [{ model_name: 'sim-small', priority: 0 }, { model_name: 'sim-large', priority: 1 }] } });
export type CreateModelGroupRequest = z.infer<typeof CreateModelGroupRequest>;

export const UpdateModelGroupRequest = z
  .strictObject({
    display_name: z.string().trim().min(1).max(200).nullable().optional(),
    description: z.string().max(2000).nullable().optional(),
    models: Models.optional(),
  })
  .meta({ id: 'UpdateModelGroupRequest', example: { description: 'Cheapest model first, a larger one as fallback' } });
export type UpdateModelGroupRequest = z.infer<typeof UpdateModelGroupRequest>;

export const ModelGroup = z
  .object({
    group_name: z.string(),
    display_name: z.string().nullable(),
    description: z.string().nullable(),
    models: z.array(z.object({ model_name: z.string(), priority: z.number().int() })),
    unpriced_models: z.array(z.string()).meta({
      description: 'models of the group with no price in the price table: teams in consumption_usd mode cannot call them (400 model_unpriced) until one is set',
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'ModelGroup' });
export type ModelGroup = z.infer<typeof ModelGroup>;

export const ModelGroupParams = z.strictObject({ group_name: Slug });
