import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { CreateTeamRequest, CreateTeamResponse } from '../../src/contracts/index.js';
import type { ApiResponse } from './app.js';

export const uniqueId = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

/**
 * What the factories need: a JSON request whose default credential is the master key. A `TestApp` is one; a
 * creditgate process of the reliability suite is one through `adminApi` (test/reliability/support.ts).
 */
export interface AdminApi {
  request<T = any>(method: string, path: string, options?: { body?: unknown }): Promise<ApiResponse<T>>;
}

export async function createOrganization(app: AdminApi, organizationId = uniqueId('org')): Promise<string> {
  const response = await app.request('POST', '/api/organizations/create', {
    body: { organization_id: organizationId, name: `Organization ${organizationId}` },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return organizationId;
}

export async function createModelGroup(app: AdminApi, groupName = uniqueId('group'), models = ['sim-small']): Promise<string> {
  const response = await app.request('POST', '/api/model-groups/create', {
    body: { group_name: groupName, models: models.map((model_name, priority) => ({ model_name, priority })) },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return groupName;
}

/** An organization and a team in it; returns the team with its virtual key. */
export async function createTeam(
  app: AdminApi,
  overrides: Partial<CreateTeamRequest> = {},
): Promise<CreateTeamResponse & { virtual_key: string }> {
  const organizationId = overrides.organization_id ?? (await createOrganization(app));
  const response = await app.request<CreateTeamResponse>('POST', '/api/teams/create', {
    body: { organization_id: organizationId, team_id: uniqueId('team'), ...overrides },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body;
}

export interface TeamSetup {
  teamId: string;
  /** The team's virtual key. */
  key: string;
  /** The model group made for the team; its name is what a call asks for as `model`. */
  group: string;
  organizationId: string;
}

export interface SetupTeamOptions {
  /** The models of the new group, in priority order (default `sim-small`). */
  models?: string[];
  /** `credits_allocated` (default 10). */
  credits?: number;
  /** An existing organization (default: a new one). */
  organizationId?: string;
  /** The group is created but not given to the team. */
  noGroup?: boolean;
  /** Existing groups the team gets besides the new one. */
  extraGroups?: string[];
  /** Any other field of the create-team request (`budget_mode`, `tokens_per_credit`...). */
  team?: Partial<CreateTeamRequest>;
}

/** An organization, a model group and a team with a key, credits and that group, all through the admin API. */
export async function setupTeam(app: AdminApi, options: SetupTeamOptions = {}): Promise<TeamSetup> {
  const organizationId = options.organizationId ?? (await createOrganization(app));
  const group = await createModelGroup(app, uniqueId('group'), options.models ?? ['sim-small']);
  const team = await createTeam(app, {
    organization_id: organizationId,
    ...(options.noGroup ? {} : { model_groups: [group, ...(options.extraGroups ?? [])] }),
    credits_allocated: options.credits ?? 10,
    ...options.team,
  });
  return { teamId: team.team_id, key: team.virtual_key, group, organizationId };
}
