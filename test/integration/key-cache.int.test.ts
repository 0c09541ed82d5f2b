import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createTeam } from '../helpers/factories.js';

/**
 * Two creditgate instances on one database, each caching verified keys for a minute: a revocation or a
 * suspension made on one must reach the other's cache at once (NOTIFY), not after the cache lifetime.
 */
let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  a = await createTestApp({ CACHE_TTL_MS: '60000' });
  b = await createTestApp({ CACHE_TTL_MS: '60000', DATABASE_URL: a.databaseUrl });
});
afterAll(async () => {
  await b.close();
  await a.close();
});

async function eventually(check: () => Promise<boolean>, timeoutMs = 2_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

describe('key cache across instances', () => {
  it('a key revoked on one instance stops working on the other within a second', async () => {
    const team = await createTeam(a);
    const path = `/api/teams/${team.team_id}`;
    expect((await b.request('GET', path, { token: team.virtual_key })).status).toBe(200);
    expect((await b.request('GET', path, { token: team.virtual_key })).status).toBe(200);
    expect((await a.request('DELETE', `/api/keys/${team.key.key_id}`)).status).toBe(200);
    expect((await a.request('GET', path, { token: team.virtual_key })).status).toBe(401);
    const waited = await eventually(async () => (await b.request('GET', path, { token: team.virtual_key })).status === 401);
    expect(waited).toBeLessThan(1_000);
  });

  it('suspending a team on one instance locks its keys out of the other, and resuming lets them back', async () => {
    const team = await createTeam(a);
    const path = `/api/credits/teams/${team.team_id}/balance`;
    expect((await b.request('GET', path, { token: team.virtual_key })).status).toBe(200);
    expect((await a.request('PUT', `/api/teams/${team.team_id}/suspend`)).status).toBe(200);
    await eventually(async () => (await b.request('GET', path, { token: team.virtual_key })).status === 403);
    expect((await a.request('PUT', `/api/teams/${team.team_id}/resume`)).status).toBe(200);
    expect((await b.request('GET', path, { token: team.virtual_key })).status).toBe(200);
  });

  it('serves a cached key without the database and still refuses it once expired', async () => {
    const team = await createTeam(a);
    const expiresAt = new Date(Date.now() + 1_500).toISOString();
    const key = await a.request('POST', `/api/teams/${team.team_id}/keys`, { body: { name: 'short', expires_at: expiresAt } });
    expect(key.status).toBe(201);
    const path = `/api/teams/${team.team_id}`;
    expect((await b.request('GET', path, { token: key.body.virtual_key })).status).toBe(200);
    await eventually(async () => (await b.request('GET', path, { token: key.body.virtual_key })).status === 401, 3_000);
  });
});
