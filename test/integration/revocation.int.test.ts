import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';

/**
 * Revocation is immediate: once a revoke (or a change of the team's settings) has answered, no instance accepts
 * what it revoked, whatever it had cached, and no lookup in flight can put the old row back.
 */

let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  a = await createTestApp({ CACHE_TTL_MS: '60000' });
  b = await createTestApp({ DATABASE_URL: a.databaseUrl, CACHE_TTL_MS: '60000' });
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

const modelsWith = (target: TestApp, key: string) => target.request('GET', '/v1/models', { token: key });

describe('revoking a key', () => {
  it('is seen by the other instance by the time the revoke answers, even with a minute of cache TTL (30 rounds)', async () => {
    const team = await setupTeam(a);
    for (let round = 0; round < 30; round++) {
      const created = await a.request('POST', `/api/teams/${team.teamId}/keys`, { body: { name: `k${round}` } });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const key: string = created.body.virtual_key;
      expect((await modelsWith(b, key)).status).toBe(200); // cached on b now
      // b keeps reading with the key while a revokes it: whatever b read before, after the revoke it refuses.
      const hammering = Array.from({ length: 5 }, () => modelsWith(b, key));
      const revoked = await a.request('DELETE', `/api/keys/${created.body.key_id}`);
      expect(revoked.status).toBe(200);
      await Promise.all(hammering);
      for (const target of [b, a]) expect((await modelsWith(target, key)).status, `round ${round} on ${target === a ? "a" : "b"}`).toBe(401);
    }
  });
});

describe('changing a team', () => {
  it("a team's new budget settings are used by the other instance by the time the change answers", async () => {
    const team = await setupTeam(a, { credits: 10 });
    const job = () => b.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'x' } });
    expect((await job()).body.credits_reserved).toBe(1); // b caches job_based, 1 credit per job
    const changed = await a.request('PATCH', `/api/credits/teams/${team.teamId}/budget-mode`, { body: { budget_mode: 'job_based', credits_per_job: 3 } });
    expect(changed.status).toBe(200);
    expect((await job()).body.credits_reserved).toBe(3);
  });
});
