import { z } from 'zod';
import { CreateModelGroupRequest, ModelGroup, ModelGroupParams, UpdateModelGroupRequest } from '../../contracts/index.js';
import {
  createModelGroup,
  deleteModelGroup,
  getModelGroup,
  listModelGroups,
  updateModelGroup,
} from '../../domain/tenancy/model-groups.service.js';
import { defineRoute } from '../route.js';

const tags = ['Model groups'];

export const modelGroupRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/model-groups/create',
    auth: 'admin',
    summary: 'Create a model group (models tried in priority order, lowest first)',
    tags,
    body: CreateModelGroupRequest,
    idempotent: 'transaction',
    response: { status: 201, schema: ModelGroup, description: 'the new model group' },
    errors: [409],
    handler: ({ ctx, body }) => createModelGroup(ctx, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/model-groups',
    auth: 'admin',
    summary: 'List model groups',
    tags,
    response: { schema: z.object({ data: z.array(ModelGroup) }), description: 'every model group' },
    handler: ({ ctx }) => listModelGroups(ctx),
  }),
  defineRoute({
    method: 'get',
    path: '/api/model-groups/{group_name}',
    auth: 'admin',
    summary: 'Get a model group',
    tags,
    params: ModelGroupParams,
    response: { schema: ModelGroup, description: 'the model group' },
    errors: [404],
    handler: ({ ctx, params }) => getModelGroup(ctx, params.group_name),
  }),
  defineRoute({
    method: 'put',
    path: '/api/model-groups/{group_name}',
    auth: 'admin',
    summary: 'Update a model group; `models` replaces the whole list',
    tags,
    params: ModelGroupParams,
    body: UpdateModelGroupRequest,
    response: { schema: ModelGroup, description: 'the updated model group' },
    errors: [404],
    handler: ({ ctx, params, body }) => updateModelGroup(ctx, params.group_name, body),
  }),
  defineRoute({
    method: 'delete',
    path: '/api/model-groups/{group_name}',
    auth: 'admin',
    summary: 'Delete a model group that no team uses',
    tags,
    params: ModelGroupParams,
    response: { schema: z.object({ group_name: z.string(), deleted: z.literal(true) }), description: 'deleted' },
    errors: [404, 409],
    handler: ({ ctx, params }) => deleteModelGroup(ctx, params.group_name),
  }),
];
