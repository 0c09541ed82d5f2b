import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteSpec } from '../../src/http/route.js';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, type ApiResponse, type RequestOptions, type TestApp } from '../helpers/app.js';
import { createModelGroup, createOrganization, createTeam, uniqueId } from '../helpers/factories.js';

/**
 * Bad input gets a clear 4xx in the contract's error shape, never a 5xx, and changes nothing: every refused
 * write below is followed by a read-back over HTTP that compares the whole visible state with the state before.
 */

type Team = Awaited<ReturnType<typeof createTeam>>;

let app: TestApp;
let org: string;
let usedGroup: string;
let unusedGroup: string;
let team: Team;

beforeAll(async () => {
  app = await createTestApp();
  org = await createOrganization(app);
  usedGroup = await createModelGroup(app, uniqueId('used'), ['sim-small', 'sim-large']);
  unusedGroup = await createModelGroup(app, uniqueId('unused'));
  team = await createTeam(app, { organization_id: org, model_groups: [usedGroup], credits_allocated: 10, team_alias: 'the team' });
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------
// helpers

function expectError(response: ApiResponse, status: number, expected: { type?: string; code?: string; param?: string | null } = {}) {
  const dump = `${response.status} ${typeof response.body === 'string' ? response.body.slice(0, 300) : JSON.stringify(response.body).slice(0, 300)}`;
  expect(response.status, dump).toBe(status);
  expectErrorShape(response);
  const error = response.body.error;
  if (expected.type !== undefined) expect(error.type, dump).toBe(expected.type);
  if (expected.code !== undefined) expect(error.code, dump).toBe(expected.code);
  if (expected.param !== undefined) expect(error.param, dump).toBe(expected.param);
  return error as { type: string; code: string; message: string; param: string | null };
}

/** `{error:{type, code, message, param, request_id?}}` and nothing else, served as JSON. */
function expectErrorShape(response: ApiResponse) {
  const dump = `${response.status} ${typeof response.body === 'string' ? response.body.slice(0, 300) : JSON.stringify(response.body).slice(0, 300)}`;
  expect(response.status, dump).toBeGreaterThanOrEqual(400);
  expect(response.status, dump).toBeLessThan(500);
  expect(response.headers.get('content-type'), dump).toMatch(/^application\/json/);
  expect(Object.keys(response.body), dump).toEqual(['error']);
  const error = response.body.error;
  for (const key of ['type', 'code', 'message']) expect(typeof error[key], `${key} in ${dump}`).toBe('string');
  expect(error.param === null || typeof error.param === 'string', dump).toBe(true);
  for (const key of Object.keys(error)) expect(['type', 'code', 'message', 'param', 'request_id'], dump).toContain(key);
}

const badRequest = (response: ApiResponse, param?: string | null, code?: string) =>
  expectError(response, 400, { type: 'invalid_request_error', ...(param !== undefined && { param }), ...(code && { code }) });

async function allOrganizations(): Promise<unknown[]> {
  const items: unknown[] = [];
  let cursor: string | null = null;
  do {
    const response: ApiResponse = await app.request('GET', `/api/organizations?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(response.status).toBe(200);
    items.push(...response.body.data);
    cursor = response.body.next_cursor;
  } while (cursor);
  return items;
}

/** Everything an admin can see about the fixtures (and every organization and model group), over HTTP. */
async function visibleState(teamIds: string[] = [team.team_id]) {
  const read = async (path: string) => {
    const response = await app.request('GET', path);
    return { status: response.status, body: response.body };
  };
  const teams: Record<string, unknown> = {};
  for (const id of teamIds) {
    teams[id] = {
      team: await read(`/api/teams/${encodeURIComponent(id)}`),
      balance: await read(`/api/credits/teams/${encodeURIComponent(id)}/balance`),
      transactions: await read(`/api/credits/teams/${encodeURIComponent(id)}/transactions?limit=200`),
      keys: withoutLastUsed(await read(`/api/teams/${encodeURIComponent(id)}/keys`)),
    };
  }
  return { organizations: await allOrganizations(), modelGroups: await read('/api/model-groups'), teams };
}

/** Using a key to make a refused request still counts as using it; that is not a change of state. */
function withoutLastUsed(keys: { status: number; body: { data?: Record<string, unknown>[] } }) {
  return { ...keys, body: { data: keys.body.data?.map(({ last_used_at: _lastUsed, ...key }) => key) } };
}

/** Runs `act` and checks that afterwards everything visible is exactly as before. */
async function expectNothingChanged(act: () => Promise<void>, teamIds?: string[]) {
  const before = await visibleState(teamIds);
  await act();
  expect(await visibleState(teamIds)).toEqual(before);
}

const addPath = () => `/api/credits/teams/${team.team_id}/add`;
/** `{team}` and `{group}` stand for the fixture team and its model group (they exist only once beforeAll ran). */
const resolvePath = (path: string) => path.replace('{team}', team.team_id).replace('{group}', usedGroup);

// ---------------------------------------------------------------------------------------------------------

describe('malformed bodies', () => {
  it.each([
    ['truncated object', '{"organization_id": '],
    ['single quotes', "{'organization_id': 'x'}"],
    ['trailing comma', '{"organization_id":"x","name":"y",}'],
    ['bare word', 'undefined'],
    ['NaN', '{"credits": NaN, "reason": "x"}'],
    ['two documents', '{"a":1}{"b":2}'],
    ['top-level null', 'null'],
    ['top-level string', '"str"'],
    ['top-level number', '123'],
  ])('%s → 400 invalid_json and nothing created', async (_name, rawBody) => {
    await expectNothingChanged(async () => {
      for (const [method, path] of [
        ['POST', '/api/organizations/create'],
        ['POST', '/api/teams/create'],
        ['POST', addPath()],
        ['PUT', `/api/model-groups/${usedGroup}`],
        ['PATCH', `/api/credits/teams/${team.team_id}/budget-mode`],
      ] as const) {
        badRequest(await app.request(method, path, { rawBody }), null, 'invalid_json');
      }
    });
  });

  it('a body over the 1 MB limit → 413 and nothing added; a large body under it reaches validation', async () => {
    await expectNothingChanged(async () => {
      const huge = JSON.stringify({ credits: 5, reason: 'x'.repeat(1_500_000) });
      expectError(await app.request('POST', addPath(), { rawBody: huge }), 413, { type: 'invalid_request_error' });
      const hugeOrg = JSON.stringify({ organization_id: uniqueId('huge'), name: 'n', metadata: { blob: 'y'.repeat(1_500_000) } });
      expectError(await app.request('POST', '/api/organizations/create', { rawBody: hugeOrg }), 413);
      // 900 kB is within the limit, so it is parsed and then refused by the schema (reason is at most 500 chars).
      const large = JSON.stringify({ credits: 5, reason: 'x'.repeat(900_000) });
      badRequest(await app.request('POST', addPath(), { rawBody: large }), 'reason');
    });
  });

  it('non-JSON content types on a POST → 400 and nothing created', async () => {
    const organizationId = uniqueId('ctype');
    const json = JSON.stringify({ organization_id: organizationId, name: 'content type' });
    await expectNothingChanged(async () => {
      for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream']) {
        const rawBody = contentType.startsWith('application/x-www') ? `organization_id=${organizationId}&name=form` : json;
        const response = await app.request('POST', '/api/organizations/create', { rawBody, headers: { 'content-type': contentType } });
        badRequest(response);
      }
      const credits = await app.request('POST', addPath(), { rawBody: JSON.stringify({ credits: 5, reason: 'x' }), headers: { 'content-type': 'text/plain' } });
      badRequest(credits);
    });
    expectError(await app.request('GET', `/api/organizations/${organizationId}`), 404);
  });

  it.each([
    ['an unsupported charset', { 'content-type': 'application/json; charset=ibm037' }],
    ['an unknown content encoding', { 'content-encoding': 'compress' }],
    ['gzip declared but not gzipped', { 'content-encoding': 'gzip' }],
    ['deflate declared but not deflated', { 'content-encoding': 'deflate' }],
  ])('%s → 400 (not 415 or 500) and nothing created', async (_name, headers) => {
    const organizationId = uniqueId('enc');
    const json = JSON.stringify({ organization_id: organizationId, name: 'encoding' });
    await expectNothingChanged(async () => {
      badRequest(await app.request('POST', '/api/organizations/create', { rawBody: json, headers }));
    });
    expectError(await app.request('GET', `/api/organizations/${organizationId}`), 404);
  });
});

describe('schema validation', () => {
  it.each([
    ['POST', '/api/organizations/create', () => ({ organization_id: uniqueId('o'), name: 'n', colour: 'red' }), 'colour'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), credits: 5 }), 'credits'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: [{ model_name: 'm', priority: 0, weight: 1 }] }), 'models.0.weight'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 5, reason: 'r', actor: 'admin:someone-else' }), 'actor'],
    ['PATCH', '/api/credits/teams/{team}/budget-mode', () => ({ budget_mode: 'job_based', free: true }), 'free'],
    ['PUT', '/api/model-groups/{group}', () => ({ display_name: 'x', owner: 'me' }), 'owner'],
    ['POST', '/api/teams/{team}/keys', () => ({ name: 'k', scopes: ['all'] }), 'scopes'],
    ['POST', '/api/admin-users/create', () => ({ email: `${uniqueId('a')}@example.com`, password: 'long enough password', role: 'root' }), 'role'],
  ] as const)('%s %s with an unknown field → 400 naming it (%s)', async (method, path, body, param) => {
    await expectNothingChanged(async () => {
      badRequest(await app.request(method, resolvePath(path), { body: body() }), param, 'unknown_parameter');
    });
  });

  const wrongTypes: [string, string, () => unknown, string][] = [
    ['POST', '/api/organizations/create', () => ({ organization_id: uniqueId('o'), name: 123 }), 'name'],
    ['POST', '/api/organizations/create', () => ({ organization_id: 42, name: 'n' }), 'organization_id'],
    ['POST', '/api/organizations/create', () => ({ organization_id: [uniqueId('o')], name: 'n' }), 'organization_id'],
    ['POST', '/api/organizations/create', () => ({ organization_id: uniqueId('o'), name: null }), 'name'],
    ['POST', '/api/organizations/create', () => ({ organization_id: uniqueId('o'), name: 'n', metadata: 'x' }), 'metadata'],
    ['POST', '/api/organizations/create', () => ({ organization_id: uniqueId('o'), name: 'n', metadata: [1, 2] }), 'metadata'],
    ['POST', '/api/organizations/create', () => ({ organization_id: { $ne: null }, name: 'n' }), 'organization_id'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), credits_allocated: '100' }), 'credits_allocated'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), credits_allocated: 1.5 }), 'credits_allocated'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), credits_allocated: -1 }), 'credits_allocated'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), model_groups: usedGroup }), 'model_groups'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), model_groups: [usedGroup, usedGroup] }), 'model_groups'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), budget_mode: 1 }), 'budget_mode'],
    ['POST', '/api/teams/create', () => ({ organization_id: org, team_id: uniqueId('t'), team_alias: ['a'] }), 'team_alias'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: '5', reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: null, reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: [5], reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: true, reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: { value: 5 }, reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 5, reason: 5 }), 'reason'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 5, reason: ['r'] }), 'reason'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 5, reason: '   ' }), 'reason'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 1e12, reason: 'r' }), 'credits'],
    ['POST', '/api/credits/teams/{team}/add', () => ({ credits: 0, reason: 'r' }), 'credits'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: 'sim-small' }), 'models'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: [] }), 'models'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: [{ model_name: 'm', priority: '1' }] }), 'models.0.priority'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: [{ model_name: 7, priority: 1 }] }), 'models.0.model_name'],
    ['POST', '/api/model-groups/create', () => ({ group_name: uniqueId('g'), models: [null] }), 'models.0'],
    ['PUT', '/api/model-groups/{group}', () => ({ display_name: 5 }), 'display_name'],
    ['PUT', '/api/model-groups/{group}', () => ({ models: [] }), 'models'],
    ['PATCH', '/api/credits/teams/{team}/budget-mode', () => ({ budget_mode: 'consumption_tokens', tokens_per_credit: '1000' }), 'tokens_per_credit'],
    ['PATCH', '/api/credits/teams/{team}/budget-mode', () => ({ budget_mode: null }), 'budget_mode'],
    ['POST', '/api/teams/{team}/keys', () => ({ name: 12 }), 'name'],
    ['POST', '/api/teams/{team}/keys', () => ({ expires_at: 'tomorrow' }), 'expires_at'],
    ['POST', '/api/teams/{team}/keys', () => ({ expires_at: 1893456000 }), 'expires_at'],
    ['POST', '/api/admin-users/create', () => ({ email: 123, password: 'long enough password' }), 'email'],
    ['POST', '/api/admin-users/create', () => ({ email: 'not an email', password: 'long enough password' }), 'email'],
    ['POST', '/api/admin-users/login', () => ({ email: 'a@example.com', password: ['x'] }), 'password'],
  ];

  it.each(wrongTypes)('%s %s #%# → 400 with param %s, nothing changed', async (method, path, body, param) => {
    await expectNothingChanged(async () => {
      const sent = body();
      const response = await app.request(method, resolvePath(path), { body: sent, ...(path === '/api/admin-users/login' && { token: null }) });
      expect(response.status, JSON.stringify(sent)).toBe(400);
      badRequest(response, param);
    });
  });

  it('a number too large for JSON (1e999) is refused', async () => {
    await expectNothingChanged(async () => {
      badRequest(await app.request('POST', addPath(), { rawBody: '{"credits": 1e999, "reason": "overflow"}' }), 'credits');
    });
  });

  it.each([
    ['unknown parameter', '?colour=red', 'colour'],
    ['limit not a number', '?limit=abc', 'limit'],
    ['limit 0', '?limit=0', 'limit'],
    ['limit too large', '?limit=201', 'limit'],
    ['limit fractional', '?limit=1.5', 'limit'],
    ['limit repeated', '?limit=1&limit=2', 'limit'],
    ['cursor too long', `?cursor=${'c'.repeat(200)}`, 'cursor'],
  ])('query string: %s → 400', async (_name, query, param) => {
    badRequest(await app.request('GET', `/api/organizations${query}`), param);
    badRequest(await app.request('GET', `/api/credits/teams/${team.team_id}/transactions${query}`), param);
  });
});

describe('ids', () => {
  const badIds = [
    ['a space', 'has space'],
    ['65 characters', 'a'.repeat(65)],
    ['empty', ''],
    ['a leading dash', '-dash'],
    ['a leading dot', '.hidden'],
    ['a slash', 'a/b'],
    ['path traversal', '../etc'],
    ['non-ASCII', 'ünïcode'],
    ['an emoji', 'team-😀'],
    ['a NUL byte', 'a\u0000b'],
    ['a newline', 'a\nb'],
    ['SQL', "x'; DROP TABLE teams;--"],
  ] as const;

  it.each(badIds)('an id with %s is refused in every create body, and nothing is created', async (_name, id) => {
    await expectNothingChanged(async () => {
      badRequest(await app.request('POST', '/api/organizations/create', { body: { organization_id: id, name: 'n' } }), 'organization_id');
      badRequest(await app.request('POST', '/api/teams/create', { body: { organization_id: org, team_id: id } }), 'team_id');
      badRequest(await app.request('POST', '/api/teams/create', { body: { organization_id: id, team_id: uniqueId('t') } }), 'organization_id');
      badRequest(
        await app.request('POST', '/api/model-groups/create', { body: { group_name: id, models: [{ model_name: 'sim-small', priority: 0 }] } }),
        'group_name',
      );
      badRequest(await app.request('POST', '/api/teams/create', { body: { organization_id: org, team_id: uniqueId('t'), model_groups: [id] } }), 'model_groups.0');
    });
  });

  it('a 64-character id is the longest accepted', async () => {
    const id = `z${'9'.repeat(63)}`;
    const created = await app.request('POST', '/api/organizations/create', { body: { organization_id: id, name: 'long id' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await app.request('GET', `/api/organizations/${id}`)).body.organization_id).toBe(id);
  });

  const badPathValues = [
    'bad%20id!',
    'a'.repeat(65),
    '%00',
    '..%2F..%2Fetc%2Fpasswd',
    '%2e%2e',
    '%E0%A4%A',
    '%25',
    '%ZZ',
    '-leading-dash',
    'x'.repeat(5000),
    '%F0%9F%98%80',
    "'%3B%20DROP%20TABLE%20teams%3B--",
    '%0D%0ASet-Cookie%3A%20x%3D1',
    'key_UPPERCASEUPPERCASEUPPER',
  ];

  /** Valid bodies, so a path that slipped through validation would really change something. */
  const VALID_BODIES: Record<string, unknown> = {
    [`POST /api/credits/teams/{team_id}/add`]: { credits: 1, reason: 'through a bad path' },
    [`PATCH /api/credits/teams/{team_id}/budget-mode`]: { budget_mode: 'consumption_tokens', tokens_per_credit: 7 },
    [`PUT /api/model-groups/{group_name}`]: { display_name: 'changed through a bad path' },
    [`POST /api/teams/{team_id}/keys`]: { name: 'through a bad path' },
  };

  const routesWithParams = allRoutes.filter((route) => route.path.includes('{'));
  const tokenFor = (route: RouteSpec) => (route.auth === 'public' ? null : route.auth === 'team' ? team.virtual_key : undefined);

  it.each(routesWithParams.map((route) => ({ route, name: `${route.method.toUpperCase()} ${route.path}` })))(
    'invalid path values on $name → 400 or 404, never 5xx, nothing changed',
    async ({ route }) => {
      await expectNothingChanged(async () => {
        const offenders: string[] = [];
        for (const value of badPathValues) {
          const path = route.path.replace(/\{\w+\}/g, value);
          // '%2e%2e' is a dot segment to every URL parser, fetch included: `/api/teams/%2e%2e/jobs` is sent as
          // `/api/jobs`, another route that carries no value at all.
          if (new URL(path, 'http://host').pathname !== path) continue;
          const body = VALID_BODIES[`${route.method.toUpperCase()} ${route.path}`] ?? (route.body ? {} : undefined);
          const response = await app.request(route.method.toUpperCase(), path, { body, token: tokenFor(route) });
          if (![400, 404].includes(response.status)) offenders.push(`${path.slice(0, 80)} → ${response.status}`);
          else expectErrorShape(response);
        }
        expect(offenders, offenders.join('; ')).toEqual([]);
      });
    },
  );

  it.each([
    ['GET', '/api/teams/%ZZ'],
    ['GET', '/api/credits/teams/%E0%A4%A/balance'],
    ['DELETE', '/api/keys/%ZZ'],
    ['PUT', '/api/teams/%E0%A4%A/suspend'],
  ])('%s %s (broken percent-encoding in a path value) → 400, not 500', async (method, path) => {
    await expectNothingChanged(async () => {
      badRequest(await app.request(method, path));
    });
  });

  it('/api/teams/bad%20id! → 400 naming team_id', async () => {
    badRequest(await app.request('GET', '/api/teams/bad%20id!'), 'team_id');
  });
});

describe('routing', () => {
  it.each([
    ['GET', '/api/nope'],
    ['GET', '/consoles'],
    ['GET', '/api'],
    ['POST', '/api/organizations'],
    ['DELETE', '/api/organizations/some-org'],
    ['PUT', '/api/teams/some-team'],
    ['POST', '/api/teams'],
    ['GET', '/api/teams/a/b/c/d'],
    ['POST', '/health'],
  ])('%s %s → JSON 404 route_not_found', async (method, path) => {
    for (const token of [undefined, null]) {
      const response = await app.request(method, path, { ...(token === null && { token: null }), ...(method !== 'GET' && { body: {} }) });
      expectError(response, 404, { type: 'invalid_request_error', code: 'route_not_found' });
    }
  });
});

describe('Idempotency-Key', () => {
  it.each([
    ['300 characters', 'k'.repeat(300)],
    ['256 characters', 'k'.repeat(256)],
    ['a space inside', 'two words'],
    ['a non-ASCII character', 'caf\u00e9'],
    ['a tab', 'a\tb'],
  ])('a key with %s → 400 naming the header; nothing created or charged', async (_name, key) => {
    const organizationId = uniqueId('idem');
    await expectNothingChanged(async () => {
      const headers = { 'Idempotency-Key': key };
      badRequest(await app.request('POST', addPath(), { body: { credits: 3, reason: 'idem' }, headers }), 'Idempotency-Key');
      badRequest(await app.request('POST', '/api/organizations/create', { body: { organization_id: organizationId, name: 'idem' }, headers }), 'Idempotency-Key');
      badRequest(
        await app.request('POST', '/api/teams/create', { body: { organization_id: org, team_id: uniqueId('t'), credits_allocated: 5 }, headers }),
        'Idempotency-Key',
      );
    });
    expectError(await app.request('GET', `/api/organizations/${organizationId}`), 404);
  });

  it('a 255-character key is accepted and replays', async () => {
    const headers = { 'Idempotency-Key': 'k'.repeat(255) };
    const first = await app.request('POST', '/api/organizations/create', { body: { organization_id: uniqueId('idem'), name: 'ok' }, headers });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const again = await app.request('POST', '/api/organizations/create', { body: { organization_id: first.body.organization_id, name: 'ok' }, headers });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
  });
});

describe('conflicts and references', () => {
  it('a duplicate organization → 409 already_exists; the original is untouched', async () => {
    await expectNothingChanged(async () => {
      const duplicate = await app.request('POST', '/api/organizations/create', { body: { organization_id: org, name: 'renamed', metadata: { evil: true } } });
      expectError(duplicate, 409, { type: 'invalid_request_error', code: 'already_exists' });
    });
  });

  it('a duplicate team → 409 already_exists; no credits, keys or organization move', async () => {
    const otherOrg = await createOrganization(app);
    await expectNothingChanged(async () => {
      for (const organization_id of [org, otherOrg]) {
        const duplicate = await app.request('POST', '/api/teams/create', {
          body: { organization_id, team_id: team.team_id, credits_allocated: 1000, model_groups: [unusedGroup], team_alias: 'hijack' },
        });
        expectError(duplicate, 409, { code: 'already_exists' });
        expect(JSON.stringify(duplicate.body)).not.toContain('sk-');
      }
    });
  });

  it('a duplicate model group → 409 already_exists; its models are untouched', async () => {
    await expectNothingChanged(async () => {
      const duplicate = await app.request('POST', '/api/model-groups/create', {
        body: { group_name: usedGroup, display_name: 'replaced', models: [{ model_name: 'other-model', priority: 0 }] },
      });
      expectError(duplicate, 409, { code: 'already_exists' });
    });
  });

  it('a team in an unknown organization → 404; the team does not exist afterwards', async () => {
    const teamId = uniqueId('orphan');
    await expectNothingChanged(async () => {
      const response = await app.request('POST', '/api/teams/create', {
        body: { organization_id: uniqueId('no-such-org'), team_id: teamId, credits_allocated: 5 },
      });
      expectError(response, 404, { type: 'invalid_request_error', param: 'organization_id' });
    });
    expectError(await app.request('GET', `/api/teams/${teamId}`), 404);
  });

  it('a team with an unknown model group → 400 unknown_model_group; nothing of it remains and its id is still free', async () => {
    const teamId = uniqueId('nogroup');
    await expectNothingChanged(async () => {
      const response = await app.request('POST', '/api/teams/create', {
        body: { organization_id: org, team_id: teamId, model_groups: [usedGroup, uniqueId('no-such-group')], credits_allocated: 50 },
      });
      badRequest(response, 'model_groups', 'unknown_model_group');
    });
    expectError(await app.request('GET', `/api/teams/${teamId}`), 404);
    expectError(await app.request('GET', `/api/credits/teams/${teamId}/balance`), 404);
    // The refused create was rolled back as a whole: the same id can be created cleanly now, with only its own grant.
    const created = await app.request('POST', '/api/teams/create', { body: { organization_id: org, team_id: teamId, model_groups: [usedGroup], credits_allocated: 50 } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const transactions = await app.request('GET', `/api/credits/teams/${teamId}/transactions`);
    expect(transactions.body.data).toHaveLength(1);
    expect(transactions.body.data[0]).toMatchObject({ type: 'grant', amount: 50 });
  });

  it('deleting a model group a team uses → 409 in_use; the group and the assignment stay', async () => {
    await expectNothingChanged(async () => {
      const response = await app.request('DELETE', `/api/model-groups/${usedGroup}`);
      expectError(response, 409, { type: 'invalid_request_error', code: 'in_use' });
    });
    expect((await app.request('GET', `/api/model-groups/${usedGroup}`)).status).toBe(200);
    expect((await app.request('GET', `/api/teams/${team.team_id}`)).body.model_groups).toEqual([usedGroup]);
  });

  it('deleting an unused model group works once, then 404', async () => {
    const group = await createModelGroup(app, uniqueId('disposable'));
    const deleted = await app.request('DELETE', `/api/model-groups/${group}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ group_name: group, deleted: true });
    expectError(await app.request('GET', `/api/model-groups/${group}`), 404);
    expectError(await app.request('DELETE', `/api/model-groups/${group}`), 404);
  });

  it('operations on objects that do not exist → 404 and create nothing', async () => {
    const ghost = uniqueId('ghost');
    await expectNothingChanged(async () => {
      expectError(await app.request('POST', `/api/credits/teams/${ghost}/add`, { body: { credits: 1, reason: 'x' } }), 404);
      expectError(await app.request('PUT', `/api/teams/${ghost}/suspend`), 404);
      expectError(await app.request('PUT', `/api/teams/${ghost}/resume`), 404);
      expectError(await app.request('POST', `/api/teams/${ghost}/keys`, { body: {} }), 404);
      expectError(await app.request('PATCH', `/api/credits/teams/${ghost}/budget-mode`, { body: { budget_mode: 'job_based' } }), 404);
      expectError(await app.request('PUT', `/api/model-groups/${ghost}`, { body: { display_name: 'x' } }), 404);
      expectError(await app.request('DELETE', `/api/model-groups/${ghost}`), 404);
      expectError(await app.request('DELETE', '/api/keys/key_000000000000000000000'), 404);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// hostile bodies, against every route that takes one

function nested(depth: number, leaf: string): string {
  return '{"a":'.repeat(depth) + leaf + '}'.repeat(depth);
}

const HOSTILE_BODIES: [string, string][] = [
  ['null', 'null'],
  ['empty array', '[]'],
  ['string', '"str"'],
  ['number', '123'],
  ['boolean', 'true'],
  ['array of objects', '[{"organization_id":"x","name":"y"}]'],
  ['object nested 200 levels', nested(200, '1')],
  ['array nested 200 levels', '['.repeat(200) + ']'.repeat(200)],
  ['__proto__ key', '{"__proto__":{"x":1,"polluted":true}}'],
  ['constructor.prototype key', '{"constructor":{"prototype":{"x":1,"polluted":true}}}'],
  ['__proto__ in an array', '[{"__proto__":{"polluted":true}}]'],
  ['very long string value', JSON.stringify({ x: 'a'.repeat(200_000) })],
  ['very long key', JSON.stringify({ ['k'.repeat(50_000)]: 1 })],
  ['10 000 keys', JSON.stringify(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])))],
  ['unicode control characters', '{"\\u0000\\u0007\\u001b[2J":"\\u0000\\u001b[31m\\u202e\\ud800\\uffff"}'],
  ['lone surrogates and BOM', '\ufeff{"\\udfff":"\\ud800"}'],
  ['huge number', '{"x":1e999999}'],
];

const bodyRoutes = allRoutes.filter((route) => route.body !== undefined);

/** Existing objects for path parameters, so the bodies are judged by a route that could really act. */
function hostilePath(route: RouteSpec): string {
  const values: Record<string, string> = {
    team_id: team.team_id,
    organization_id: org,
    group_name: usedGroup,
    key_id: team.key.key_id,
    model_name: 'sim-small',
  };
  // Well-formed ids of objects that do not exist: the body is validated before anything is looked up.
  const ghosts: Record<string, string> = {
    job_id: 'job_000000000000000000000',
    endpoint_id: 'whe_000000000000000000000',
    delivery_id: 'whd_000000000000000000000',
  };
  return route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = values[name] ?? ghosts[name];
    if (!value) throw new Error(`no fixture for path parameter {${name}} of ${route.path}`);
    return encodeURIComponent(value);
  });
}

describe('hostile bodies', () => {
  it('there are routes with bodies to attack', () => {
    expect(bodyRoutes.length).toBeGreaterThan(0);
  });

  describe.each(bodyRoutes.map((route) => ({ route, name: `${route.auth} ${route.method.toUpperCase()} ${route.path}` })))('$name', ({ route }) => {
    it.each(HOSTILE_BODIES)('%s → a 4xx error in the contract shape', async (_name, rawBody) => {
      const options: RequestOptions = { rawBody };
      if (route.auth === 'public') options.token = null;
      if (route.auth === 'team') options.token = team.virtual_key;
      const response = await app.request(route.method.toUpperCase(), hostilePath(route), options);
      expectErrorShape(response);
      expect(response.status).not.toBe(401);
    });
  });

  it('left the prototypes of this process clean, the fixtures unchanged and the server healthy', async () => {
    const probe: Record<string, unknown> = {};
    expect(probe.x).toBeUndefined();
    expect(probe.polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(Object.prototype).not.toHaveProperty('x');
    expect(await visibleState()).toMatchObject({ teams: { [team.team_id]: { team: { status: 200 } } } });
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    expect(balance.body).toMatchObject({ balance: 10, budget_mode: 'job_based' });
    const health = await app.request('GET', '/health', { token: null });
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
    expect((await app.request('GET', '/ready', { token: null })).status).toBe(200);
  });

  it('an organization whose metadata carries prototype keys is stored as plain data or refused, never a 5xx', async () => {
    const organizationId = uniqueId('proto');
    const rawBody = `{"organization_id":"${organizationId}","name":"proto","metadata":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"deep":${nested(200, '1')}}}`;
    const response = await app.request('POST', '/api/organizations/create', { rawBody });
    expect(response.status, JSON.stringify(response.body).slice(0, 300)).toBeLessThan(500);
    if (response.status >= 400) expectErrorShape(response);
    else expect((await app.request('GET', `/api/organizations/${organizationId}`)).status).toBe(200);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await app.request('GET', '/health', { token: null })).status).toBe(200);
  });
});
