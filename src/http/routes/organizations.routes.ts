import { CreateOrganizationRequest, Organization, OrganizationParams, page, PageQuery } from '../../contracts/index.js';
import { createOrganization, getOrganization, listOrganizations } from '../../domain/tenancy/organizations.service.js';
import { defineRoute } from '../route.js';

const tags = ['Organizations'];

export const organizationRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/organizations/create',
    auth: 'admin',
    summary: 'Create an organization',
    tags,
    body: CreateOrganizationRequest,
    idempotent: 'transaction',
    response: { status: 201, schema: Organization, description: 'the new organization' },
    errors: [409],
    handler: ({ ctx, body }) => createOrganization(ctx, body),
  }),
  defineRoute({
    method: 'get',
    path: '/api/organizations',
    auth: 'admin',
    summary: 'List organizations',
    tags,
    query: PageQuery,
    response: { schema: page(Organization), description: 'one page of organizations, by id' },
    handler: ({ ctx, query }) => listOrganizations(ctx, query),
  }),
  defineRoute({
    method: 'get',
    path: '/api/organizations/{organization_id}',
    auth: 'admin',
    summary: 'Get an organization',
    tags,
    params: OrganizationParams,
    response: { schema: Organization, description: 'the organization' },
    errors: [404],
    handler: ({ ctx, params }) => getOrganization(ctx, params.organization_id),
  }),
];
