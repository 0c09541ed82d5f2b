import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../../src/http/routes/index.js';
import { createTestApp, type ApiResponse, type TestApp } from '../helpers/app.js';
import { createTeam } from '../helpers/factories.js';

/**
 * A suspended team's keys (issue 13, item 6) are told why they are refused: 403 `team_suspended` on every route a
 * team key may use, /v1 included, so the caller asks an admin instead of rotating a key that is fine. Revoked
 * and expired keys stay 401, and resuming the team restores every key at once.
 */
let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

const teamRoutes = allRoutes.filter((route) => route.auth === 'team' || route.auth === 'team_or_admin');

function expectSuspended(response: ApiResponse, what: string) {
  expect(response.status, `${what}: ${JSON.stringify(response.body)}`).toBe(403);
  expect(response.body.error, what).toMatchObject({ type: 'permission_error', code: 'team_suspended', param: null });
}

const expectInvalidKey = (response: ApiResponse) => {
  expect(response.status, JSON.stringify(response.body)).toBe(401);
  expect(response.body.error.code).toBe('invalid_api_key');
};

describe('a suspended team', () => {
  it('gets 403 team_suspended on every team route, /v1 included; resuming restores access', async () => {
    expect(teamRoutes.map((route) => route.path)).toEqual(expect.arrayContaining(['/v1/chat/completions', '/v1/models', '/api/jobs/create']));
    const team = await createTeam(app, { credits_allocated: 5 });
    expect((await app.request('GET', '/v1/models', { token: team.virtual_key })).status).toBe(200);
    expect((await app.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);

    for (const route of teamRoutes) {
      // The key is refused before anything else is read, so path parameters and bodies need only be well formed.
      const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'team_id' ? team.team_id : 'x'));
      const response = await app.request(route.method.toUpperCase(), path, {
        token: team.virtual_key,
        ...(route.body && { body: {} }),
      });
      expectSuspended(response, `${route.method.toUpperCase()} ${route.path}`);
    }

    expect((await app.request('PUT', `/api/teams/${team.team_id}/resume`)).status).toBe(200);
    expect((await app.request('GET', '/v1/models', { token: team.virtual_key })).status).toBe(200);
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`, { token: team.virtual_key });
    expect(balance.status).toBe(200);
    expect(balance.body.balance).toBe(5);
  });

  it('still answers 401 for its revoked and expired keys, and for keys that never existed', async () => {
    const team = await createTeam(app);
    const revoked = await app.request('POST', `/api/teams/${team.team_id}/keys`, { body: { name: 'to revoke' } });
    const expiring = await app.request('POST', `/api/teams/${team.team_id}/keys`, {
      body: { name: 'short-lived', expires_at: new Date(Date.now() + 1_000).toISOString() },
    });
    expect([revoked.status, expiring.status]).toEqual([201, 201]);
    expect((await app.request('DELETE', `/api/keys/${revoked.body.key_id}`)).status).toBe(200);
    expect((await app.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));

    const path = `/api/credits/teams/${team.team_id}/balance`;
    expectSuspended(await app.request('GET', path, { token: team.virtual_key }), 'its live key');
    expectInvalidKey(await app.request('GET', path, { token: revoked.body.virtual_key }));
    expectInvalidKey(await app.request('GET', path, { token: expiring.body.virtual_key }));
    expectInvalidKey(await app.request('GET', path, { token: 'sk-never-issued-000000000000000000000000' }));
  });

  it('a suspension on one instance reaches another that had the key cached', async () => {
    const other = await createTestApp({ DATABASE_URL: app.databaseUrl, CACHE_TTL_MS: '60000' });
    try {
      const team = await createTeam(app);
      expect((await other.request('GET', '/v1/models', { token: team.virtual_key })).status).toBe(200);
      expect((await app.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);
      const deadline = Date.now() + 2_000;
      let answer = await other.request('GET', '/v1/models', { token: team.virtual_key });
      while (answer.status === 200 && Date.now() < deadline) answer = await other.request('GET', '/v1/models', { token: team.virtual_key });
      expectSuspended(answer, 'on the other instance');
    } finally {
      await other.close();
    }
  });
});
