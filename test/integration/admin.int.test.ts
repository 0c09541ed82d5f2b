import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createOrganization, createTeam, uniqueId } from '../helpers/factories.js';

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app.close());

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function expectError(response: { status: number; body: any }, status: number, param?: string | null) {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expect(response.body.error).toEqual(
    expect.objectContaining({ type: expect.any(String), code: expect.any(String), message: expect.any(String) }),
  );
  if (param !== undefined) expect(response.body.error.param).toBe(param);
}

describe('organizations', () => {
  it('creates an organization and reports it', async () => {
    const id = uniqueId('acme');
    const created = await app.request('POST', '/api/organizations/create', {
      body: { organization_id: id, name: '  Acme Corp  ', metadata: { plan: 'pro', seats: 3 } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toEqual({
      organization_id: id,
      name: 'Acme Corp',
      metadata: { plan: 'pro', seats: 3 },
      team_count: 0,
      created_at: expect.stringMatching(ISO_TIMESTAMP),
      updated_at: expect.stringMatching(ISO_TIMESTAMP),
    });

    const fetched = await app.request('GET', `/api/organizations/${id}`);
    expect(fetched.status).toBe(200);
    expect(fetched.body).toEqual(created.body);

    const withoutMetadata = await app.request('POST', '/api/organizations/create', { body: { organization_id: uniqueId('bare'), name: 'Bare' } });
    expect(withoutMetadata.status).toBe(201);
    expect(withoutMetadata.body.metadata).toEqual({});
  });

  it('counts the teams of an organization', async () => {
    const id = await createOrganization(app);
    expect((await app.request('GET', `/api/organizations/${id}`)).body.team_count).toBe(0);
    await createTeam(app, { organization_id: id });
    expect((await app.request('GET', `/api/organizations/${id}`)).body.team_count).toBe(1);
    await createTeam(app, { organization_id: id });
    expect((await app.request('GET', `/api/organizations/${id}`)).body.team_count).toBe(2);
  });

  it('pages through organizations by id with limit and cursor', async () => {
    // `zz` sorts after every other id this file creates, so the last page is ours alone.
    const prefix = `zz-page-${randomBytes(3).toString('hex')}`;
    const ids = [`${prefix}-1`, `${prefix}-2`, `${prefix}-3`];
    for (const id of [...ids].reverse()) await createOrganization(app, id);
    await createTeam(app, { organization_id: ids[1] });

    const first = await app.request('GET', `/api/organizations?limit=2&cursor=${prefix}`);
    expect(first.status).toBe(200);
    expect(first.body.data.map((o: { organization_id: string }) => o.organization_id)).toEqual([ids[0], ids[1]]);
    expect(first.body.data.map((o: { team_count: number }) => o.team_count)).toEqual([0, 1]);
    expect(first.body).toMatchObject({ has_more: true, next_cursor: ids[1] });

    const second = await app.request('GET', `/api/organizations?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.status).toBe(200);
    expect(second.body.data.map((o: { organization_id: string }) => o.organization_id)).toEqual([ids[2]]);
    expect(second.body).toMatchObject({ has_more: false, next_cursor: null });

    // Walking every page from the start visits each organization once, in id order.
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const page: { status: number; body: any } = await app.request('GET', `/api/organizations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((o: { organization_id: string }) => o.organization_id));
      cursor = page.body.next_cursor;
      if (!page.body.has_more) break;
    }
    expect(cursor).toBeNull();
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
    expect(seen.slice(-3)).toEqual(ids);

    expectError(await app.request('GET', '/api/organizations?limit=0'), 400, 'limit');
    expectError(await app.request('GET', '/api/organizations?limit=201'), 400, 'limit');
  });

  it('rejects a duplicate organization id with 409 and keeps the original', async () => {
    const id = await createOrganization(app);
    const duplicate = await app.request('POST', '/api/organizations/create', { body: { organization_id: id, name: 'Impostor' } });
    expectError(duplicate, 409);
    expect(duplicate.body.error.code).toBe('already_exists');
    expect((await app.request('GET', `/api/organizations/${id}`)).body.name).toBe(`Organization ${id}`);
  });

  it('answers 404 for an unknown organization and 400 for an invalid id', async () => {
    expectError(await app.request('GET', '/api/organizations/no-such-org'), 404, 'organization_id');
    expectError(await app.request('POST', '/api/organizations/create', { body: { organization_id: 'has space', name: 'x' } }), 400, 'organization_id');
  });
});

describe('model groups', () => {
  it('creates a group with its models listed lowest priority first, gets and lists it', async () => {
    const name = uniqueId('group');
    const created = await app.request('POST', '/api/model-groups/create', {
      body: {
        group_name: name,
        display_name: 'Chat models',
        description: 'fast first, then bigger',
        models: [
          { model_name: 'sim-large', priority: 30 },
          { model_name: 'sim-small', priority: 0 },
          { model_name: 'sim-medium', priority: 10 },
        ],
      },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toEqual({
      group_name: name,
      display_name: 'Chat models',
      description: 'fast first, then bigger',
      models: [
        { model_name: 'sim-small', priority: 0 },
        { model_name: 'sim-medium', priority: 10 },
        { model_name: 'sim-large', priority: 30 },
      ],
      // sim-small and sim-large have list prices; sim-medium has none, so consumption_usd teams cannot call it.
      unpriced_models: ['sim-medium'],
      created_at: expect.stringMatching(ISO_TIMESTAMP),
      updated_at: expect.stringMatching(ISO_TIMESTAMP),
    });

    const fetched = await app.request('GET', `/api/model-groups/${name}`);
    expect(fetched.status).toBe(200);
    expect(fetched.body).toEqual(created.body);

    const other = await createModelGroup(app, uniqueId('group'), ['sim-small']);
    const listed = await app.request('GET', '/api/model-groups');
    expect(listed.status).toBe(200);
    const names = listed.body.data.map((g: { group_name: string }) => g.group_name);
    expect(names).toEqual(expect.arrayContaining([name, other]));
    expect(names).toEqual([...names].sort());
    expect(listed.body.data.find((g: { group_name: string }) => g.group_name === name)).toEqual(created.body);

    const minimal = await app.request('GET', `/api/model-groups/${other}`);
    expect(minimal.body).toMatchObject({ display_name: null, description: null, models: [{ model_name: 'sim-small', priority: 0 }] });
  });

  it('updates the names and replaces the models with PUT', async () => {
    const name = await createModelGroup(app, uniqueId('group'), ['sim-small', 'sim-medium']);
    const renamed = await app.request('PUT', `/api/model-groups/${name}`, { body: { display_name: 'Renamed', description: 'now described' } });
    expect(renamed.status, JSON.stringify(renamed.body)).toBe(200);
    expect(renamed.body).toMatchObject({
      group_name: name,
      display_name: 'Renamed',
      description: 'now described',
      // models untouched when not given
      models: [
        { model_name: 'sim-small', priority: 0 },
        { model_name: 'sim-medium', priority: 1 },
      ],
    });

    const replaced = await app.request('PUT', `/api/model-groups/${name}`, {
      body: { models: [{ model_name: 'sim-b', priority: 7 }, { model_name: 'sim-a', priority: 3 }] },
    });
    expect(replaced.status, JSON.stringify(replaced.body)).toBe(200);
    expect(replaced.body).toMatchObject({
      display_name: 'Renamed',
      description: 'now described',
      models: [
        { model_name: 'sim-a', priority: 3 },
        { model_name: 'sim-b', priority: 7 },
      ],
    });
    expect(Date.parse(replaced.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(replaced.body.created_at));

    const fetched = await app.request('GET', `/api/model-groups/${name}`);
    expect(fetched.body).toEqual(replaced.body);

    const cleared = await app.request('PUT', `/api/model-groups/${name}`, { body: { display_name: null, description: null } });
    expect(cleared.status).toBe(200);
    expect(cleared.body).toMatchObject({ display_name: null, description: null, models: replaced.body.models });

    expectError(await app.request('PUT', '/api/model-groups/no-such-group', { body: { display_name: 'x' } }), 404);
    const duplicateModels = await app.request('PUT', `/api/model-groups/${name}`, {
      body: { models: [{ model_name: 'sim-a', priority: 1 }, { model_name: 'sim-a', priority: 2 }] },
    });
    expectError(duplicateModels, 400, 'models');
    expect((await app.request('GET', `/api/model-groups/${name}`)).body.models).toEqual(replaced.body.models);
  });

  it('deletes an unused group, after which it is gone', async () => {
    const name = await createModelGroup(app);
    const deleted = await app.request('DELETE', `/api/model-groups/${name}`);
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200);
    expect(deleted.body).toEqual({ group_name: name, deleted: true });
    expectError(await app.request('GET', `/api/model-groups/${name}`), 404, 'group_name');
    const listed = await app.request('GET', '/api/model-groups');
    expect(listed.body.data.map((g: { group_name: string }) => g.group_name)).not.toContain(name);
    expectError(await app.request('DELETE', `/api/model-groups/${name}`), 404);
  });

  it('refuses to delete a group a team uses', async () => {
    const name = await createModelGroup(app);
    const team = await createTeam(app, { model_groups: [name] });
    const refused = await app.request('DELETE', `/api/model-groups/${name}`);
    expectError(refused, 409);
    expect(refused.body.error.code).toBe('in_use');
    expect(refused.body.error.message).toContain(team.team_id);
    expect((await app.request('GET', `/api/model-groups/${name}`)).status).toBe(200);
    expect((await app.request('GET', `/api/teams/${team.team_id}`)).body.model_groups).toEqual([name]);
  });

  it('rejects a duplicate group name and duplicate models within a group', async () => {
    const name = await createModelGroup(app, uniqueId('group'), ['sim-small']);
    const duplicate = await app.request('POST', '/api/model-groups/create', {
      body: { group_name: name, models: [{ model_name: 'sim-large', priority: 0 }] },
    });
    expectError(duplicate, 409);
    expect(duplicate.body.error.code).toBe('already_exists');
    expect((await app.request('GET', `/api/model-groups/${name}`)).body.models).toEqual([{ model_name: 'sim-small', priority: 0 }]);

    const other = uniqueId('group');
    const repeatedModel = await app.request('POST', '/api/model-groups/create', {
      body: { group_name: other, models: [{ model_name: 'sim-small', priority: 0 }, { model_name: 'sim-small', priority: 1 }] },
    });
    expectError(repeatedModel, 400, 'models');
    expect(repeatedModel.body.error.type).toBe('invalid_request_error');
    expectError(await app.request('GET', `/api/model-groups/${other}`), 404);

    expectError(await app.request('POST', '/api/model-groups/create', { body: { group_name: uniqueId('group'), models: [] } }), 400, 'models');
  });
});

describe('teams', () => {
  it('creates a team with credits, ordered model groups, an alias, budget settings and a working key', async () => {
    const organizationId = await createOrganization(app);
    // Names chosen so that alphabetical order differs from the requested order.
    const defaultGroup = await createModelGroup(app, `zz-${uniqueId('group')}`);
    const secondGroup = await createModelGroup(app, `aa-${uniqueId('group')}`);
    const teamId = uniqueId('team');
    const created = await app.request('POST', '/api/teams/create', {
      body: {
        organization_id: organizationId,
        team_id: teamId,
        team_alias: 'Research',
        model_groups: [defaultGroup, secondGroup],
        credits_allocated: 250,
        budget_mode: 'consumption_tokens',
        tokens_per_credit: 1000,
        credits_per_job: 2,
        metadata: { cost_center: 'r&d' },
      },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const team = created.body;
    expect(team).toMatchObject({
      team_id: teamId,
      organization_id: organizationId,
      team_alias: 'Research',
      status: 'active',
      model_groups: [defaultGroup, secondGroup],
      budget_mode: 'consumption_tokens',
      tokens_per_credit: 1000,
      credits_per_job: 2,
      credits_per_dollar: null,
      credits: { balance: 250, held: 0, credits_remaining: 250 },
      metadata: { cost_center: 'r&d' },
      created_at: expect.stringMatching(ISO_TIMESTAMP),
      updated_at: expect.stringMatching(ISO_TIMESTAMP),
    });
    expect(team.virtual_key).toMatch(/^sk-[A-Za-z0-9_-]{20,}$/);
    expect(team.key).toMatchObject({
      key_id: expect.stringMatching(/^key_[a-z0-9]{21}$/),
      team_id: teamId,
      status: 'active',
      revoked_at: null,
      expires_at: null,
    });
    expect(team.key.key_prefix.length).toBeGreaterThan(3);
    expect(team.key.key_prefix.length).toBeLessThan(team.virtual_key.length);
    expect(team.virtual_key.startsWith(team.key.key_prefix)).toBe(true);
    expect(team.key).not.toHaveProperty('virtual_key');

    // The master key sees the same team, without any secret.
    const fetched = await app.request('GET', `/api/teams/${teamId}`);
    expect(fetched.status).toBe(200);
    const { virtual_key: _secret, key: _key, ...teamFields } = team;
    expect(fetched.body).toEqual(teamFields);
    expect(JSON.stringify(fetched.body)).not.toContain(team.virtual_key);

    // The virtual key works for its own team, and only there.
    const own = await app.request('GET', `/api/teams/${teamId}`, { token: team.virtual_key });
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ team_id: teamId, model_groups: [defaultGroup, secondGroup] });
    const other = await createTeam(app);
    expectError(await app.request('GET', `/api/teams/${other.team_id}`, { token: team.virtual_key }), 404);
    expectError(await app.request('GET', '/api/organizations', { token: team.virtual_key }), 403);

    const organization = await app.request('GET', `/api/organizations/${organizationId}`);
    expect(organization.body.team_count).toBe(1);
  });

  it('defaults an omitted alias, groups and budget', async () => {
    const team = await createTeam(app);
    expect(team).toMatchObject({
      team_alias: null,
      model_groups: [],
      budget_mode: 'job_based',
      credits_per_job: 1,
      tokens_per_credit: null,
      credits_per_dollar: null,
      credits: { balance: 0, held: 0, credits_remaining: 0 },
      metadata: {},
    });
  });

  it('suspends and resumes a team; a suspended team’s key stops working', async () => {
    const team = await createTeam(app, { credits_allocated: 5 });
    const suspended = await app.request('PUT', `/api/teams/${team.team_id}/suspend`);
    expect(suspended.status, JSON.stringify(suspended.body)).toBe(200);
    expect(suspended.body).toMatchObject({ team_id: team.team_id, status: 'suspended', credits: { balance: 5 } });
    expect((await app.request('GET', `/api/teams/${team.team_id}`)).body.status).toBe('suspended');
    const refused = await app.request('GET', `/api/teams/${team.team_id}`, { token: team.virtual_key });
    expectError(refused, 403);
    expect(refused.body.error.code).toBe('team_suspended');

    const resumed = await app.request('PUT', `/api/teams/${team.team_id}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ team_id: team.team_id, status: 'active' });
    expect((await app.request('GET', `/api/teams/${team.team_id}`, { token: team.virtual_key })).status).toBe(200);
  });

  it('answers 404 for an unknown team, organization or model group', async () => {
    expectError(await app.request('GET', '/api/teams/no-such-team'), 404, 'team_id');
    expectError(await app.request('PUT', '/api/teams/no-such-team/suspend'), 404);
    expectError(await app.request('PUT', '/api/teams/no-such-team/resume'), 404);
    expectError(
      await app.request('POST', '/api/teams/create', { body: { organization_id: 'no-such-org', team_id: uniqueId('team') } }),
      404,
      'organization_id',
    );

    const teamId = uniqueId('team');
    const unknownGroup = await app.request('POST', '/api/teams/create', {
      body: { organization_id: await createOrganization(app), team_id: teamId, model_groups: ['no-such-group'] },
    });
    expectError(unknownGroup, 400, 'model_groups');
    expectError(await app.request('GET', `/api/teams/${teamId}`), 404);
  });

  it('rejects a duplicate team id with 409', async () => {
    const team = await createTeam(app, { credits_allocated: 3 });
    const duplicate = await app.request('POST', '/api/teams/create', {
      body: { organization_id: team.organization_id, team_id: team.team_id, credits_allocated: 100 },
    });
    expectError(duplicate, 409);
    expect((await app.request('GET', `/api/credits/teams/${team.team_id}/balance`)).body.balance).toBe(3);
  });

  it('rejects consumption_tokens without tokens_per_credit and creates nothing', async () => {
    const organizationId = await createOrganization(app);
    const teamId = uniqueId('team');
    const rejected = await app.request('POST', '/api/teams/create', {
      body: { organization_id: organizationId, team_id: teamId, budget_mode: 'consumption_tokens', credits_allocated: 10 },
    });
    expectError(rejected, 400, 'tokens_per_credit');
    expect(rejected.body.error.type).toBe('invalid_request_error');
    expectError(await app.request('GET', `/api/teams/${teamId}`), 404);
    expectError(await app.request('GET', `/api/credits/teams/${teamId}/balance`), 404);
    expect((await app.request('GET', `/api/organizations/${organizationId}`)).body.team_count).toBe(0);

    // The same id is still free.
    const retried = await app.request('POST', '/api/teams/create', {
      body: { organization_id: organizationId, team_id: teamId, budget_mode: 'consumption_tokens', tokens_per_credit: 500 },
    });
    expect(retried.status, JSON.stringify(retried.body)).toBe(201);
  });
});

describe('virtual keys', () => {
  it('creates, lists and revokes keys; a revoked key stops working while the other keeps working', async () => {
    const team = await createTeam(app);
    const created = await app.request('POST', `/api/teams/${team.team_id}/keys`, { body: { name: 'ci pipeline' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const second = created.body;
    expect(second).toMatchObject({
      key_id: expect.stringMatching(/^key_[a-z0-9]{21}$/),
      team_id: team.team_id,
      name: 'ci pipeline',
      status: 'active',
      revoked_at: null,
      expires_at: null,
      created_at: expect.stringMatching(ISO_TIMESTAMP),
    });
    expect(second.virtual_key).toMatch(/^sk-/);
    expect(second.virtual_key).not.toBe(team.virtual_key);
    expect(second.key_id).not.toBe(team.key.key_id);
    expect(second.virtual_key.startsWith(second.key_prefix)).toBe(true);
    expect((await app.request('GET', `/api/teams/${team.team_id}`, { token: second.virtual_key })).status).toBe(200);

    const listed = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toHaveLength(2);
    const byId = new Map<string, any>(listed.body.data.map((key: { key_id: string }) => [key.key_id, key]));
    expect(byId.get(team.key.key_id)).toMatchObject({ status: 'active', team_id: team.team_id, key_prefix: team.key.key_prefix });
    expect(byId.get(second.key_id)).toMatchObject({ status: 'active', name: 'ci pipeline', key_prefix: second.key_prefix });
    for (const key of listed.body.data) {
      expect(key).not.toHaveProperty('virtual_key');
      expect(Object.keys(key).filter((field) => /hash|secret/i.test(field))).toEqual([]);
    }
    const listedText = JSON.stringify(listed.body);
    expect(listedText).not.toContain(team.virtual_key);
    expect(listedText).not.toContain(second.virtual_key);

    const revoked = await app.request('DELETE', `/api/keys/${team.key.key_id}`);
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.body).toMatchObject({ key_id: team.key.key_id, team_id: team.team_id, status: 'revoked', revoked_at: expect.stringMatching(ISO_TIMESTAMP) });
    expect(revoked.body).not.toHaveProperty('virtual_key');

    const afterRevoke = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    const statuses = Object.fromEntries(afterRevoke.body.data.map((key: { key_id: string; status: string }) => [key.key_id, key.status]));
    expect(statuses).toEqual({ [team.key.key_id]: 'revoked', [second.key_id]: 'active' });

    const rejected = await app.request('GET', `/api/teams/${team.team_id}`, { token: team.virtual_key });
    expectError(rejected, 401);
    expect(rejected.body.error.type).toBe('authentication_error');
    expect((await app.request('GET', `/api/teams/${team.team_id}`, { token: second.virtual_key })).status).toBe(200);

    // Revoking again is harmless and keeps the first revocation time.
    const again = await app.request('DELETE', `/api/keys/${team.key.key_id}`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'revoked', revoked_at: revoked.body.revoked_at });
  });

  it('answers 404 for keys of an unknown team or an unknown key, and 400 for a malformed key id', async () => {
    expectError(await app.request('POST', '/api/teams/no-such-team/keys', { body: { name: 'x' } }), 404);
    expectError(await app.request('GET', '/api/teams/no-such-team/keys'), 404);
    expectError(await app.request('DELETE', `/api/keys/key_${'0'.repeat(21)}`), 404);
    expectError(await app.request('DELETE', '/api/keys/not-a-key'), 400, 'key_id');
  });

  it('keeps key management for admins', async () => {
    const team = await createTeam(app);
    expectError(await app.request('GET', `/api/teams/${team.team_id}/keys`, { token: team.virtual_key }), 403);
    expectError(await app.request('POST', `/api/teams/${team.team_id}/keys`, { token: team.virtual_key, body: {} }), 403);
    expectError(await app.request('DELETE', `/api/keys/${team.key.key_id}`, { token: team.virtual_key }), 403);
    expectError(await app.request('GET', `/api/teams/${team.team_id}/keys`, { token: null }), 401);
    expect((await app.request('GET', `/api/teams/${team.team_id}`, { token: team.virtual_key })).status).toBe(200);
  });
});

describe('initial credits', () => {
  it('grants credits_allocated as an "initial allocation" ledger entry', async () => {
    const team = await createTeam(app, { credits_allocated: 120 });
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    expect(balance.status).toBe(200);
    expect(balance.body).toMatchObject({
      team_id: team.team_id,
      balance: 120,
      held: 0,
      credits_remaining: 120,
      credits_allocated: 120,
      credits_used: 0,
    });

    const transactions = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions`);
    expect(transactions.status).toBe(200);
    expect(transactions.body).toMatchObject({ has_more: false, next_cursor: null });
    expect(transactions.body.data).toHaveLength(1);
    expect(transactions.body.data[0]).toMatchObject({
      team_id: team.team_id,
      type: 'grant',
      amount: 120,
      held_change: 0,
      balance_after: 120,
      held_after: 0,
      job_id: null,
      reason: 'initial allocation',
      actor: 'admin:master_key',
      created_at: expect.stringMatching(ISO_TIMESTAMP),
    });

    // The team's own key sees the same balance.
    const own = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`, { token: team.virtual_key });
    expect(own.status).toBe(200);
    expect(own.body.balance).toBe(120);
  });

  it('writes no ledger entry when credits_allocated is 0 or omitted', async () => {
    for (const overrides of [{ credits_allocated: 0 }, {}]) {
      const team = await createTeam(app, overrides);
      expect(team.credits).toEqual({ balance: 0, held: 0, credits_remaining: 0 });
      const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
      expect(balance.body).toMatchObject({ balance: 0, credits_allocated: 0, credits_used: 0 });
      const transactions = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions`);
      expect(transactions.status).toBe(200);
      expect(transactions.body).toEqual({ data: [], has_more: false, next_cursor: null });
    }
  });
});

describe('admin users', () => {
  const password = 'correct horse battery staple';
  const email = `Ops.${randomBytes(3).toString('hex')}@Example.COM`;
  let adminUserId: string;
  let jwt: string;

  it('creates an admin user with the master key; rejects duplicates and short passwords', async () => {
    const created = await app.request('POST', '/api/admin-users/create', { body: { email, password } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toEqual({
      admin_user_id: expect.any(String),
      email: email.toLowerCase(),
      created_at: expect.stringMatching(ISO_TIMESTAMP),
      last_login_at: null,
    });
    expect(JSON.stringify(created.body)).not.toMatch(/scrypt|password/i);
    adminUserId = created.body.admin_user_id;

    const duplicate = await app.request('POST', '/api/admin-users/create', { body: { email: email.toUpperCase(), password } });
    expectError(duplicate, 409);
    expect(duplicate.body.error.code).toBe('already_exists');

    const short = await app.request('POST', '/api/admin-users/create', { body: { email: 'short@example.com', password: 'elevenchars' } });
    expectError(short, 400, 'password');
    expectError(await app.request('POST', '/api/admin-users/create', { body: { email: 'not-an-email', password } }), 400, 'email');
    expectError(await app.request('POST', '/api/admin-users/create', { token: null, body: { email: 'anon@example.com', password } }), 401);
  });

  it('logs in with the password and acts with the JWT as that admin', async () => {
    expect(adminUserId).toBeDefined();
    const login = await app.request('POST', '/api/admin-users/login', { token: null, body: { email: email.toUpperCase(), password } });
    expect(login.status, JSON.stringify(login.body)).toBe(200);
    expect(login.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 3600 });
    jwt = login.body.access_token;
    expect(jwt.split('.')).toHaveLength(3);
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8'));
    expect(claims.sub).toBe(adminUserId);
    expect(claims.exp - claims.iat).toBe(3600);

    expectError(await app.request('POST', '/api/admin-users/login', { token: null, body: { email, password: 'wrong password!!' } }), 401);

    const organizationId = uniqueId('jwt-org');
    const organization = await app.request('POST', '/api/organizations/create', { token: jwt, body: { organization_id: organizationId, name: 'Made by JWT' } });
    expect(organization.status, JSON.stringify(organization.body)).toBe(201);
    expect(organization.body).toMatchObject({ organization_id: organizationId, name: 'Made by JWT' });

    const team = await createTeam(app, { organization_id: organizationId, credits_allocated: 10 });
    const added = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { token: jwt, body: { credits: 4, reason: 'jwt grant' } });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
    expect(added.body.transaction).toMatchObject({ actor: `admin:${adminUserId}`, amount: 4, balance_after: 14 });

    const transactions = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions`, { token: jwt });
    expect(transactions.status).toBe(200);
    expect(transactions.body.data.map((t: { reason: string; actor: string }) => [t.reason, t.actor])).toEqual([
      ['jwt grant', `admin:${adminUserId}`],
      ['initial allocation', 'admin:master_key'],
    ]);

    expectError(await app.request('GET', '/api/organizations', { token: `${jwt.slice(0, -2)}xx` }), 401);
    expectError(await app.request('GET', '/api/organizations', { token: 'not-a-real-token' }), 401);
  });

  it('tells who an admin credential belongs to', async () => {
    expect(jwt).toBeDefined();
    const master = await app.request('GET', '/api/admin-users/me');
    expect(master.status).toBe(200);
    expect(master.body).toEqual({ kind: 'master_key', admin_user: null });

    const user = await app.request('GET', '/api/admin-users/me', { token: jwt });
    expect(user.status).toBe(200);
    expect(user.body).toEqual({
      kind: 'admin_user',
      admin_user: {
        admin_user_id: adminUserId,
        email: email.toLowerCase(),
        created_at: expect.stringMatching(ISO_TIMESTAMP),
        last_login_at: expect.stringMatching(ISO_TIMESTAMP),
      },
    });

    const team = await createTeam(app);
    expectError(await app.request('GET', '/api/admin-users/me', { token: team.virtual_key }), 403);
    expectError(await app.request('GET', '/api/admin-users/me', { token: null }), 401);
  });
});

describe('operations', () => {
  it('reports liveness and readiness without credentials', async () => {
    const health = await app.request('GET', '/health', { token: null });
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
    const ready = await app.request('GET', '/ready', { token: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready' });
  });

  it('serves Prometheus metrics that count requests by route template', async () => {
    expect((await app.request('GET', '/api/teams/no-such-team')).status).toBe(404);
    const metrics = await app.request<string>('GET', '/metrics', { token: null });
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metrics.body).toContain('# TYPE creditgate_http_requests_total counter');
    expect(metrics.body).toMatch(/creditgate_http_requests_total\{[^}]*route="\/api\/teams\/\{team_id\}"[^}]*status="404"[^}]*\} \d+/);
    expect(metrics.body).not.toContain('no-such-team');
  });

  it('serves an OpenAPI 3.1 document describing every route', async () => {
    const response = await app.request('GET', '/openapi.json', { token: null });
    expect(response.status).toBe(200);
    const document = response.body;
    expect(document.openapi).toMatch(/^3\.1\./);
    expect(document.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(allRoutes.length).toBeGreaterThan(10);
    const missing = allRoutes
      .filter((route) => !document.paths?.[route.path]?.[route.method])
      .map((route) => `${route.method.toUpperCase()} ${route.path}`);
    expect(missing).toEqual([]);
    for (const route of allRoutes) {
      const operation = document.paths[route.path][route.method];
      expect(operation.responses, `${route.method} ${route.path}`).toHaveProperty(String(route.response.status ?? 200));
    }
    expect(document.components?.securitySchemes?.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('answers unknown routes with a 404 error body', async () => {
    const response = await app.request('GET', '/api/no-such-route');
    expectError(response, 404);
    expect(response.body.error.code).toBe('route_not_found');
  });
});
