import { randomBytes } from 'node:crypto';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteSpec } from '../../src/http/route.js';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, TEST_MASTER_KEY, type ApiResponse, type TestApp } from '../helpers/app.js';
import { createModelGroup, createOrganization, createTeam, uniqueId } from '../helpers/factories.js';

/**
 * Every route in `allRoutes` gets its auth checks generated here, so a route added later is covered without
 * touching this file (unless it has a path parameter nobody taught PATH_FIXTURES how to fill: it then fails
 * loudly, naming the parameter).
 */

const ISSUER = 'creditgate';
const AUDIENCE = 'creditgate-admin';
const ADMIN_PASSWORD = 'correct horse battery staple';

type Team = Awaited<ReturnType<typeof createTeam>>;

let app: TestApp;
let orgA: string;
let groupA: string;
let teamA: Team;
let teamB: Team;
/** A second key of team A, used only to fill `{key_id}`; never revoked by the generated tests. */
let spareKeyA: { key_id: string; virtual_key: string };
let adminUser: { admin_user_id: string; email: string };
/** Tokens that look plausible but must never authenticate. */
const forged: Record<'otherSecret' | 'unsigned' | 'unknownSubject' | 'wrongAudience' | 'wrongIssuer', string> = {
  otherSecret: '',
  unsigned: '',
  unknownSubject: '',
  wrongAudience: '',
  wrongIssuer: '',
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randomSk = () => `sk-${randomBytes(24).toString('base64url')}`;
const appSecret = () => app.deps.adminAuth.secrets.jwtSecret;

function adminJwt(secret: Uint8Array, claims: { sub: string; iss?: string; aud?: string; exp?: number | string }): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(claims.sub)
    .setIssuer(claims.iss ?? ISSUER)
    .setAudience(claims.aud ?? AUDIENCE)
    .setIssuedAt(Math.floor(Date.now() / 1000) - 3600)
    .setExpirationTime(claims.exp ?? '1h')
    .sign(secret);
}

beforeAll(async () => {
  app = await createTestApp();
  orgA = await createOrganization(app);
  groupA = await createModelGroup(app);
  teamA = await createTeam(app, { organization_id: orgA, model_groups: [groupA], credits_allocated: 100 });
  teamB = await createTeam(app, { credits_allocated: 100 });
  const spare = await app.request('POST', `/api/teams/${teamA.team_id}/keys`, { body: { name: 'fixture' } });
  expect(spare.status, JSON.stringify(spare.body)).toBe(201);
  spareKeyA = spare.body;

  const created = await app.request('POST', '/api/admin-users/create', {
    body: { email: `${uniqueId('admin')}@example.com`, password: ADMIN_PASSWORD },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  adminUser = created.body;

  const otherSecret = new TextEncoder().encode(randomBytes(32).toString('base64url'));
  forged.otherSecret = await adminJwt(otherSecret, { sub: adminUser.admin_user_id });
  forged.unsigned = new UnsecuredJWT({})
    .setSubject(adminUser.admin_user_id)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setExpirationTime('1h')
    .encode();
  forged.unknownSubject = await adminJwt(appSecret(), { sub: 'adm_doesnotexist000000000000' });
  forged.wrongAudience = await adminJwt(appSecret(), { sub: adminUser.admin_user_id, aud: 'someone-else' });
  forged.wrongIssuer = await adminJwt(appSecret(), { sub: adminUser.admin_user_id, iss: 'not-creditgate' });
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------
// helpers

/** The contract's error envelope: exactly {error:{type, code, message, param, request_id?}}. */
function expectError(response: ApiResponse, status: number, expected: { type?: string; code?: string } = {}) {
  const dump = `${response.status} ${JSON.stringify(response.body)}`;
  expect(response.status, dump).toBe(status);
  expect(response.headers.get('content-type'), dump).toMatch(/^application\/json/);
  expect(Object.keys(response.body), dump).toEqual(['error']);
  const error = response.body.error;
  expect(Object.keys(error).sort(), dump).toEqual(
    expect.arrayContaining(['code', 'message', 'param', 'type']),
  );
  for (const key of Object.keys(error)) expect(['type', 'code', 'message', 'param', 'request_id'], dump).toContain(key);
  expect(typeof error.type, dump).toBe('string');
  expect(typeof error.code, dump).toBe('string');
  expect(typeof error.message, dump).toBe('string');
  expect(error.message.length, dump).toBeGreaterThan(0);
  expect(error.param === null || typeof error.param === 'string', dump).toBe(true);
  expect(error.request_id, dump).toBe(response.headers.get('x-request-id'));
  if (expected.type) expect(error.type, dump).toBe(expected.type);
  if (expected.code) expect(error.code, dump).toBe(expected.code);
  return error as { type: string; code: string; message: string; param: string | null; request_id?: string };
}

function expectUnauthenticated(response: ApiResponse) {
  return expectError(response, 401, { type: 'authentication_error' });
}

/** Lazily created objects owned by team A, for path parameters of routes that may be added later. */
const lazyFixtures = new Map<string, Promise<string>>();
function once(name: string, make: () => Promise<string>): Promise<string> {
  if (!lazyFixtures.has(name)) lazyFixtures.set(name, make());
  return lazyFixtures.get(name)!;
}

/** How to fill each path parameter with something that exists and belongs to team A. */
const PATH_FIXTURES: Record<string, () => Promise<string>> = {
  team_id: async () => teamA.team_id,
  organization_id: async () => orgA,
  group_name: async () => groupA,
  key_id: async () => spareKeyA.key_id,
  model_name: async () => 'sim-small',
  job_id: () =>
    once('job_id', async () => {
      const job = await app.request('POST', '/api/jobs/create', {
        token: teamA.virtual_key,
        body: { team_id: teamA.team_id, job_type: 'auth-test' },
      });
      expect(job.status, JSON.stringify(job.body)).toBe(201);
      return job.body.job_id as string;
    }),
  endpoint_id: () => webhookEndpoint().then((endpoint) => endpoint.endpoint_id),
  delivery_id: () => webhookEndpoint().then((endpoint) => endpoint.delivery_id),
  queueId: () =>
    once('queueId', async () => {
      const queued = await app.request('POST', '/api/llm/complete', {
        token: teamA.virtual_key,
        body: { model: groupA, messages: [{ role: 'user', content: 'hi' }], stream: true },
      });
      expect(queued.status, JSON.stringify(queued.body)).toBeLessThan(300);
      return queued.body.data.queueId as string;
    }),
};

/**
 * A disabled webhook endpoint (nothing is ever sent to it) with one delivery, replayed from nothing: an event of a
 * grant made while it was enabled is fanned out to it before it is disabled.
 */
const webhookEndpoint = () =>
  once('webhook_endpoint', async () => {
    const created = await app.request('POST', '/api/webhooks/endpoints', { body: { url: 'http://127.0.0.1:9/auth-test', events: ['credits.added'] } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const endpointId = created.body.endpoint_id as string;
    const granted = await app.request('POST', `/api/credits/teams/${teamA.team_id}/add`, { body: { credits: 1, reason: 'auth test' } });
    expect(granted.status, JSON.stringify(granted.body)).toBeLessThan(300);
    for (let attempt = 0; ; attempt++) {
      const deliveries = await app.request('GET', `/api/webhooks/endpoints/${endpointId}/deliveries`);
      const first = (deliveries.body.data as { delivery_id: string }[] | undefined)?.[0];
      if (first) {
        const disabled = await app.request('PATCH', `/api/webhooks/endpoints/${endpointId}`, { body: { enabled: false } });
        expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
        return JSON.stringify({ endpoint_id: endpointId, delivery_id: first.delivery_id });
      }
      if (attempt > 200) throw new Error('the webhook endpoint of the auth tests never got a delivery');
      await sleep(25);
    }
  }).then((json) => JSON.parse(json) as { endpoint_id: string; delivery_id: string });

/** Values that exist for nobody (well formed, so the answer is about existence, not syntax). */
const GHOST_VALUES: Record<string, string> = {
  team_id: 'ghost-team-0000',
  organization_id: 'ghost-org-0000',
  group_name: 'ghost-group-0000',
  key_id: 'key_000000000000000000000',
  job_id: 'job_000000000000000000000',
  queueId: 'queue_000000000000000000000',
  endpoint_id: 'whe_000000000000000000000',
  delivery_id: 'whd_000000000000000000000',
};

/** A real admin JWT of the fixture admin user, obtained by logging in once. */
const adminUserJwt = () =>
  once('admin_jwt', async () => {
    const login = await app.request('POST', '/api/admin-users/login', {
      token: null,
      body: { email: adminUser.email, password: ADMIN_PASSWORD },
    });
    expect(login.status, JSON.stringify(login.body)).toBe(200);
    return login.body.access_token as string;
  });

const paramNames = (route: RouteSpec) => [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);

async function fillPath(route: RouteSpec, override: (name: string) => string | undefined = () => undefined): Promise<string> {
  let path = route.path;
  for (const name of paramNames(route)) {
    let value = override(name);
    if (value === undefined) {
      const fixture = PATH_FIXTURES[name];
      if (!fixture) {
        throw new Error(`no fixture for path parameter {${name}} of ${route.method.toUpperCase()} ${route.path}: add one to PATH_FIXTURES`);
      }
      value = await fixture();
    }
    path = path.replace(`{${name}}`, encodeURIComponent(value));
  }
  return path;
}

/** A body that passes validation, for the routes whose success path a team key must reach. */
const VALID_BODIES: Record<string, () => unknown> = {
  'PATCH /api/jobs/{job_id}/metadata': () => ({ metadata: { reviewed: true } }),
};

function validBody(route: RouteSpec): unknown {
  if (!route.body) return undefined;
  const make = VALID_BODIES[`${route.method.toUpperCase()} ${route.path}`];
  if (!make) throw new Error(`no valid body for ${route.method.toUpperCase()} ${route.path}: add one to VALID_BODIES`);
  return make();
}

const label = (route: RouteSpec) => `${route.auth} ${route.method.toUpperCase()} ${route.path}`;
const publicRoutes = allRoutes.filter((route) => route.auth === 'public');
const protectedRoutes = allRoutes.filter((route) => route.auth !== 'public');

/** Authorization headers that must never get through (undefined: no header at all). */
const BAD_CREDENTIALS: { name: string; header: () => string | undefined }[] = [
  { name: 'no Authorization header', header: () => undefined },
  { name: 'Basic scheme', header: () => 'Basic xyz' },
  { name: 'Basic scheme carrying the master key', header: () => `Basic ${Buffer.from(`admin:${TEST_MASTER_KEY}`).toString('base64')}` },
  { name: '"Bearer" with nothing', header: () => 'Bearer' },
  { name: '"Bearer" with blanks only', header: () => 'Bearer    ' },
  { name: 'the master key without a scheme', header: () => TEST_MASTER_KEY },
  { name: 'two tokens after Bearer', header: () => `Bearer ${TEST_MASTER_KEY} ${TEST_MASTER_KEY}` },
  { name: 'an oversized bearer token', header: () => `Bearer ${'a'.repeat(4096)}` },
  { name: 'an unknown sk- key', header: () => `Bearer ${randomSk()}` },
  { name: 'a bare sk- prefix', header: () => 'Bearer sk-' },
  { name: "team A's key with one character changed", header: () => `Bearer ${flipChar(teamA.virtual_key, 10)}` },
  { name: 'a random non-sk token', header: () => `Bearer ${randomBytes(32).toString('hex')}` },
  { name: 'the master key with one character changed', header: () => `Bearer ${flipChar(TEST_MASTER_KEY, 8)}` },
  { name: 'a prefix of the master key', header: () => `Bearer ${TEST_MASTER_KEY.slice(0, -1)}` },
  { name: 'a JWT signed with another secret', header: () => `Bearer ${forged.otherSecret}` },
  { name: 'an unsigned JWT (alg none)', header: () => `Bearer ${forged.unsigned}` },
  { name: 'a JWT for an admin user that does not exist', header: () => `Bearer ${forged.unknownSubject}` },
  { name: 'a JWT for another audience', header: () => `Bearer ${forged.wrongAudience}` },
  { name: 'a JWT from another issuer', header: () => `Bearer ${forged.wrongIssuer}` },
];

/** Changes one character at `index` (counted from the end when negative) to another base64url character. */
function flipChar(value: string, index: number): string {
  const i = index < 0 ? value.length + index : index;
  const replacement = value[i] === 'A' ? 'B' : 'A';
  return value.slice(0, i) + replacement + value.slice(i + 1);
}

function requestWithHeader(route: RouteSpec, path: string, header: string | undefined, body: unknown) {
  return app.request(route.method.toUpperCase(), path, {
    token: null,
    ...(header !== undefined && { headers: { authorization: header } }),
    ...(body !== undefined && { body }),
  });
}

// ---------------------------------------------------------------------------------------------------------
// generated: one block per route

describe('route inventory', () => {
  it('has routes of every auth kind the generated tests rely on', () => {
    expect(allRoutes.length).toBeGreaterThan(0);
    expect(protectedRoutes.some((route) => route.auth === 'admin')).toBe(true);
    expect(protectedRoutes.some((route) => route.auth === 'team_or_admin')).toBe(true);
    const keys = allRoutes.map((route) => `${route.method} ${route.path}`);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe.each(publicRoutes.map((route) => ({ route, name: label(route) })))('$name', ({ route }) => {
  it('answers without a credential, and ignores a bad one', async () => {
    const path = await fillPath(route);
    // A route that takes a body (a webhook's raw one included) may refuse an empty one; the others must succeed.
    const takesBody = route.body !== undefined || route.rawBody !== undefined;
    const body = takesBody ? {} : undefined;
    const anonymous = await requestWithHeader(route, path, undefined, body);
    expect(anonymous.status, JSON.stringify(anonymous.body)).toBeLessThan(500);
    expect([401, 403]).not.toContain(anonymous.status);
    if (!takesBody) expect(anonymous.status).toBe(route.response.status ?? 200);
    const withBadKey = await requestWithHeader(route, path, `Bearer ${randomSk()}`, body);
    expect(withBadKey.status).toBe(anonymous.status);
  });
});

describe.each(protectedRoutes.map((route) => ({ route, name: label(route) })))('$name', ({ route }) => {
  it.each(BAD_CREDENTIALS)('401 for $name', async ({ header }) => {
    const path = await fillPath(route);
    const response = await requestWithHeader(route, path, header(), route.body ? {} : undefined);
    expectUnauthenticated(response);
    expect(response.body.error.code).toBe('invalid_api_key');
  });

  it('checks the credential before the input: bad path values and bodies still get 401', async () => {
    const path = await fillPath(route, () => 'bad id!');
    const response = await requestWithHeader(route, path, undefined, route.body ? { not_a_field: [1, 2, 3] } : undefined);
    expectUnauthenticated(response);
  });

  if (route.auth === 'admin') {
    it('403 permission_error for a valid team key, whichever team it belongs to', async () => {
      const path = await fillPath(route);
      for (const team of [teamA, teamB]) {
        const response = await app.request(route.method.toUpperCase(), path, { token: team.virtual_key, ...(route.body && { body: {} }) });
        expectError(response, 403, { type: 'permission_error' });
      }
    });
  }

  if (route.auth === 'team') {
    it('403 permission_error for admin credentials (master key and admin JWT)', async () => {
      const path = await fillPath(route);
      for (const token of [TEST_MASTER_KEY, await adminUserJwt()]) {
        const response = await app.request(route.method.toUpperCase(), path, { token, ...(route.body && { body: {} }) });
        expectError(response, 403, { type: 'permission_error' });
      }
    });
  }

  if (route.auth === 'team_or_admin') {
    it("404 for another team's key on team A's object (never 403, never the data); 2xx for the owner and admins", async () => {
      const method = route.method.toUpperCase();
      const success = route.response.status ?? 200;
      const path = await fillPath(route);
      const body = validBody(route);

      const own = await app.request(method, path, { token: teamA.virtual_key, body });
      expect(own.status, JSON.stringify(own.body)).toBe(success);
      const admin = await app.request(method, path, { body });
      expect(admin.status, JSON.stringify(admin.body)).toBe(success);

      // Team B's key is fine on team B's own object, so a 404 below is about ownership only.
      const bPath = await fillPath(route, (name) => (name === 'team_id' ? teamB.team_id : undefined));
      if (paramNames(route).every((name) => name === 'team_id')) {
        const bOwn = await app.request(method, bPath, { token: teamB.virtual_key, body });
        expect(bOwn.status, JSON.stringify(bOwn.body)).toBe(success);
      }

      const cross = await app.request(method, path, { token: teamB.virtual_key, body });
      const crossError = expectError(cross, 404, { type: 'invalid_request_error' });
      const leaked = JSON.stringify(cross.body);
      expect(leaked).not.toContain(orgA);
      expect(leaked).not.toContain(teamA.key.key_id);

      // Indistinguishable from an object that does not exist at all.
      const ghostPath = await fillPath(route, (name) => GHOST_VALUES[name]);
      const ghost = await app.request(method, ghostPath, { token: teamB.virtual_key, body });
      const ghostError = expectError(ghost, 404);
      expect({ ...crossError, request_id: undefined, message: crossError.message.replace(teamA.team_id, '<id>') }).toEqual({
        ...ghostError,
        request_id: undefined,
        message: ghostError.message.replace(GHOST_VALUES.team_id!, '<id>'),
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// the credential lifecycle, over HTTP

async function newKey(teamId: string, body: Record<string, unknown> = {}) {
  const response = await app.request('POST', `/api/teams/${teamId}/keys`, { body });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body as { key_id: string; virtual_key: string; status: string; expires_at: string | null };
}

const canRead = (teamId: string, token: string) => app.request('GET', `/api/credits/teams/${teamId}/balance`, { token });

describe('virtual key lifecycle', () => {
  it('a revoked key gets 401 on the very next request; revoking twice answers the same revoked_at', async () => {
    const team = await createTeam(app, { credits_allocated: 5 });
    const key = await newKey(team.team_id, { name: 'to revoke' });
    expect(key.virtual_key.startsWith('sk-')).toBe(true);
    expect((await canRead(team.team_id, key.virtual_key)).status).toBe(200);

    const revoked = await app.request('DELETE', `/api/keys/${key.key_id}`);
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.body).toMatchObject({ key_id: key.key_id, team_id: team.team_id, status: 'revoked' });
    expect(revoked.body.revoked_at).toEqual(expect.any(String));
    expect(revoked.body).not.toHaveProperty('virtual_key');

    const afterRevoke = await canRead(team.team_id, key.virtual_key);
    const revokedError = expectUnauthenticated(afterRevoke);
    const unknownError = expectUnauthenticated(await canRead(team.team_id, randomSk()));
    expect({ type: revokedError.type, code: revokedError.code }).toEqual({ type: unknownError.type, code: unknownError.code });

    await sleep(20);
    const again = await app.request('DELETE', `/api/keys/${key.key_id}`);
    expect(again.status).toBe(200);
    expect(again.body.revoked_at).toBe(revoked.body.revoked_at);
    expect(again.body.status).toBe('revoked');

    const listed = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    expect(listed.body.data.find((k: { key_id: string }) => k.key_id === key.key_id)).toMatchObject({
      status: 'revoked',
      revoked_at: revoked.body.revoked_at,
    });
    // The team's other key is untouched.
    expect((await canRead(team.team_id, team.virtual_key)).status).toBe(200);
    // Still refused on every kind of route.
    expectUnauthenticated(await app.request('GET', `/api/teams/${team.team_id}`, { token: key.virtual_key }));
    expectUnauthenticated(await app.request('GET', '/api/organizations', { token: key.virtual_key }));
  });

  it('revoking a key that does not exist is 404, a malformed key id is 400', async () => {
    expectError(await app.request('DELETE', `/api/keys/${GHOST_VALUES.key_id}`), 404);
    const malformed = expectError(await app.request('DELETE', '/api/keys/not-a-key'), 400, { type: 'invalid_request_error' });
    expect(malformed.param).toBe('key_id');
  });

  it('a key with expires_at works until then and gets 401 afterwards', async () => {
    const team = await createTeam(app);
    const expiresAt = new Date(Date.now() + 1_500);
    const key = await newKey(team.team_id, { name: 'short lived', expires_at: expiresAt.toISOString() });
    expect(key.status).toBe('active');
    expect(Date.parse(key.expires_at!)).toBe(expiresAt.getTime());
    expect((await canRead(team.team_id, key.virtual_key)).status).toBe(200);

    await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 250);
    const expired = expectUnauthenticated(await canRead(team.team_id, key.virtual_key));
    expect(expired.code).toBe('invalid_api_key');
    const listed = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    expect(listed.body.data.find((k: { key_id: string }) => k.key_id === key.key_id)).toMatchObject({ status: 'expired' });
    expect((await canRead(team.team_id, team.virtual_key)).status).toBe(200);
  });

  it('refuses a key that would already be expired, and creates nothing', async () => {
    const team = await createTeam(app);
    const before = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    const past = await app.request('POST', `/api/teams/${team.team_id}/keys`, {
      body: { expires_at: new Date(Date.now() - 60_000).toISOString() },
    });
    expect(expectError(past, 400).param).toBe('expires_at');
    expect((await app.request('GET', `/api/teams/${team.team_id}/keys`)).body).toEqual(before.body);
  });

  it("a suspended team's keys get 403 team_suspended until it is resumed", async () => {
    const team = await createTeam(app, { credits_allocated: 3 });
    const second = await newKey(team.team_id, { name: 'second' });
    for (const token of [team.virtual_key, second.virtual_key]) expect((await canRead(team.team_id, token)).status).toBe(200);

    const suspended = await app.request('PUT', `/api/teams/${team.team_id}/suspend`);
    expect(suspended.status, JSON.stringify(suspended.body)).toBe(200);
    expect(suspended.body).toMatchObject({ team_id: team.team_id, status: 'suspended' });
    for (const token of [team.virtual_key, second.virtual_key]) {
      expectError(await canRead(team.team_id, token), 403, { type: 'permission_error', code: 'team_suspended' });
      expectError(await app.request('GET', `/api/teams/${team.team_id}`, { token }), 403, { type: 'permission_error', code: 'team_suspended' });
    }
    // Admins still see it; other teams are unaffected.
    expect((await app.request('GET', `/api/teams/${team.team_id}`)).body.status).toBe('suspended');
    expect((await canRead(teamB.team_id, teamB.virtual_key)).status).toBe(200);

    const resumed = await app.request('PUT', `/api/teams/${team.team_id}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body.status).toBe('active');
    for (const token of [team.virtual_key, second.virtual_key]) {
      const response = await canRead(team.team_id, token);
      expect(response.status).toBe(200);
      expect(response.body.balance).toBe(3);
    }
  });
});

describe('admin users and admin JWTs', () => {
  const email = `${uniqueId('ops')}@example.com`;
  const password = 'a long enough password!';
  let userId: string;
  let jwt: string;

  beforeAll(async () => {
    const created = await app.request('POST', '/api/admin-users/create', { body: { email, password } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ email, last_login_at: null });
    expect(JSON.stringify(created.body)).not.toContain(password);
    userId = created.body.admin_user_id;

    const login = await app.request('POST', '/api/admin-users/login', { token: null, body: { email, password } });
    expect(login.status, JSON.stringify(login.body)).toBe(200);
    expect(login.body).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number) });
    expect(login.body.access_token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    jwt = login.body.access_token;
  });

  it('the JWT works on admin routes and /me names the user', async () => {
    expect((await app.request('GET', '/api/organizations', { token: jwt })).status).toBe(200);
    const me = await app.request('GET', '/api/admin-users/me', { token: jwt });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ kind: 'admin_user', admin_user: { admin_user_id: userId, email } });
    expect(me.body.admin_user.last_login_at).toEqual(expect.any(String));
    const master = await app.request('GET', '/api/admin-users/me');
    expect(master.body).toEqual({ kind: 'master_key', admin_user: null });
  });

  it('the JWT is accepted on every admin GET route', async () => {
    const adminGets = allRoutes.filter((route) => route.auth === 'admin' && route.method === 'get');
    expect(adminGets.length).toBeGreaterThan(0);
    for (const route of adminGets) {
      const response = await app.request('GET', await fillPath(route), { token: jwt });
      expect(response.status, `${route.path}: ${JSON.stringify(response.body)}`).toBe(route.response.status ?? 200);
    }
  });

  it('writes made with the JWT are attributed to the admin user', async () => {
    const added = await app.request('POST', `/api/credits/teams/${teamB.team_id}/add`, { token: jwt, body: { credits: 1, reason: 'jwt grant' } });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
    expect(added.body.transaction.actor).toBe(`admin:${userId}`);
  });

  it('a wrong password and an unknown email get the same 401', async () => {
    const wrongPassword = await app.request('POST', '/api/admin-users/login', { token: null, body: { email, password: `${password}x` } });
    const unknownEmail = await app.request('POST', '/api/admin-users/login', {
      token: null,
      body: { email: `${uniqueId('nobody')}@example.com`, password },
    });
    const a = expectUnauthenticated(wrongPassword);
    const b = expectUnauthenticated(unknownEmail);
    expect(a.code).toBe(b.code);
    expect(a.message).toBe(b.message);
    expect(a.param).toBe(b.param);
    expect(JSON.stringify(wrongPassword.body)).not.toContain('access_token');
  });

  it('a JWT with a flipped signature character gets 401', async () => {
    const [header, payload, signature] = jwt.split('.') as [string, string, string];
    // The middle of the signature: the last base64url character partly encodes padding bits.
    const tampered = `${header}.${payload}.${flipChar(signature, Math.floor(signature.length / 2))}`;
    expect(tampered).not.toBe(jwt);
    expectUnauthenticated(await app.request('GET', '/api/organizations', { token: tampered }));
    expectUnauthenticated(await app.request('GET', '/api/admin-users/me', { token: tampered }));
  });

  it('a JWT whose payload was edited gets 401', async () => {
    const [header, , signature] = jwt.split('.') as [string, string, string];
    const payload = Buffer.from(
      JSON.stringify({ sub: adminUser.admin_user_id, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 3600 }),
    ).toString('base64url');
    expectUnauthenticated(await app.request('GET', '/api/organizations', { token: `${header}.${payload}.${signature}` }));
  });

  it('an expired JWT gets 401, while the same claims unexpired work', async () => {
    const expired = await adminJwt(appSecret(), { sub: userId, exp: Math.floor(Date.now() / 1000) - 60 });
    expectUnauthenticated(await app.request('GET', '/api/organizations', { token: expired }));
    const fresh = await adminJwt(appSecret(), { sub: userId, exp: Math.floor(Date.now() / 1000) + 60 });
    expect((await app.request('GET', '/api/organizations', { token: fresh })).status).toBe(200);
  });

  it('a team key on /api/admin-users/me gets 403', async () => {
    expectError(await app.request('GET', '/api/admin-users/me', { token: teamA.virtual_key }), 403, { type: 'permission_error' });
  });

  it('a team key cannot create admin users, and nothing is created', async () => {
    const sneaky = `${uniqueId('sneaky')}@example.com`;
    const response = await app.request('POST', '/api/admin-users/create', {
      token: teamA.virtual_key,
      body: { email: sneaky, password: 'another long password' },
    });
    expectError(response, 403, { type: 'permission_error' });
    expectUnauthenticated(
      await app.request('POST', '/api/admin-users/login', { token: null, body: { email: sneaky, password: 'another long password' } }),
    );
  });

  it('refuses a duplicate admin user and a short password', async () => {
    expectError(await app.request('POST', '/api/admin-users/create', { body: { email, password: 'yet another password' } }), 409, {
      code: 'already_exists',
    });
    const short = await app.request('POST', '/api/admin-users/create', { body: { email: `${uniqueId('s')}@example.com`, password: 'short' } });
    expect(expectError(short, 400).param).toBe('password');
    // The original password still works: the duplicate changed nothing.
    expect((await app.request('POST', '/api/admin-users/login', { token: null, body: { email, password } })).status).toBe(200);
  });
});

describe('virtual keys are shown once', () => {
  it('no list or read endpoint returns a key secret, only its prefix', async () => {
    const team = await createTeam(app, { credits_allocated: 2 });
    const extra = await newKey(team.team_id, { name: 'extra' });
    const secrets = [team.virtual_key, extra.virtual_key];

    const listed = await app.request('GET', `/api/teams/${team.team_id}/keys`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toHaveLength(2);
    for (const key of listed.body.data) {
      expect(key).not.toHaveProperty('virtual_key');
      expect(key).not.toHaveProperty('key_hash');
      const secret = key.key_id === extra.key_id ? extra.virtual_key : team.virtual_key;
      expect(secret.startsWith(key.key_prefix)).toBe(true);
      expect(key.key_prefix.length).toBeLessThanOrEqual(12);
    }

    const reads = [
      listed,
      await app.request('GET', `/api/teams/${team.team_id}`),
      await app.request('GET', `/api/teams/${team.team_id}`, { token: team.virtual_key }),
      await app.request('GET', `/api/credits/teams/${team.team_id}/balance`),
      await app.request('GET', `/api/credits/teams/${team.team_id}/transactions`),
      await app.request('GET', `/api/organizations/${team.organization_id}`),
      await app.request('GET', '/api/organizations?limit=200'),
    ];
    for (const response of reads) {
      expect(response.status).toBe(200);
      const json = JSON.stringify(response.body);
      expect(json).not.toContain('virtual_key');
      for (const secret of secrets) expect(json).not.toContain(secret);
    }
  });
});
