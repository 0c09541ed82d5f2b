import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { CreateTeamRequest, CreateTeamResponse } from '../../src/contracts/index.js';
import type { TestApp } from './app.js';

export const uniqueId = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

export async function createOrganization(app: TestApp, organizationId = uniqueId('org')): Promise<string> {
  const response = await app.request('POST', '/api/organizations/create', {
    body: { organization_id: organizationId, name: `Organization ${organizationId}` },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return organizationId;
}

export async function createModelGroup(app: TestApp, groupName = uniqueId('group'), models = ['sim-small']): Promise<string> {
  const response = await app.request('POST', '/api/model-groups/create', {
    body: { group_name: groupName, models: models.map((model_name, priority) => ({ model_name, priority })) },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return groupName;
}

/** An organization and a team in it; returns the team with its virtual key. */
export async function createTeam(
  app: TestApp,
  overrides: Partial<CreateTeamRequest> = {},
): Promise<CreateTeamResponse & { virtual_key: string }> {
  const organizationId = overrides.organization_id ?? (await createOrganization(app));
  const response = await app.request<CreateTeamResponse>('POST', '/api/teams/create', {
    body: { organization_id: organizationId, team_id: uniqueId('team'), ...overrides },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body;
}
