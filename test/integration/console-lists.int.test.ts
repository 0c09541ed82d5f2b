import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balanceOf, expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createOrganization, setupTeam, uniqueId, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';

/**
 * The admin lists and edits the operator console uses, over HTTP: teams (filters, search, sorts, keyset pages,
 * delete = archive), jobs (filters, pages, an admin's view and cancel, metadata), deductions, the ledger's filters,
 * its CSV export and the balance history.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

const ids = (body: { data: { team_id?: string; job_id?: string }[] }) => body.data.map((row) => row.job_id ?? row.team_id);

async function oneShot(setup: TeamSetup, jobType = 'chat', text = 'Hello') {
  const response = await app.request('POST', '/api/jobs/create-and-call', {
    token: setup.key,
    body: { team_id: setup.teamId, job_type: jobType, messages: [{ role: 'user', content: text }] },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body.job_id as string;
}

/** Every page of a list, following next_cursor. */
async function walk(path: string, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const separator = path.includes('?') ? '&' : '?';
    const page: { status: number; body: any } = await app.request('GET', `${path}${separator}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status, JSON.stringify(page.body)).toBe(200);
    expect(page.body.data.length).toBeLessThanOrEqual(limit);
    seen.push(...(ids(page.body) as string[]));
    cursor = page.body.next_cursor;
    expect(page.body.has_more).toBe(cursor !== null);
    if (!cursor) return seen;
  }
  throw new Error('too many pages');
}

describe('GET /api/teams', () => {
  it('lists teams with balance, held, status, budget mode and last activity; filters, searches, sorts and pages', async () => {
    const organizationId = await createOrganization(app);
    const teams: TeamSetup[] = [];
    for (const credits of [30, 10, 20]) teams.push(await setupTeam(app, { organizationId, credits }));
    await oneShot(teams[1]!);
    await app.request('PATCH', `/api/teams/${teams[2]!.teamId}`, { body: { team_alias: 'Needle Support' } });
    await app.request('PUT', `/api/teams/${teams[2]!.teamId}/suspend`);

    const all = await app.request('GET', `/api/teams?organization_id=${organizationId}`);
    expect(all.status).toBe(200);
    expect(ids(all.body)).toEqual(teams.map((team) => team.teamId).sort());
    const busy = all.body.data.find((row: { team_id: string }) => row.team_id === teams[1]!.teamId);
    expect(busy).toMatchObject({ organization_id: organizationId, status: 'active', budget_mode: 'job_based', balance: 9, held: 0, credits_remaining: 9 });
    expect(Date.parse(busy.last_activity_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(all.body.data.find((row: { team_id: string }) => row.team_id === teams[0]!.teamId).last_activity_at).toBeNull();

    const byBalance = await app.request('GET', `/api/teams?organization_id=${organizationId}&sort=balance&order=desc`);
    expect(byBalance.body.data.map((row: { balance: number }) => row.balance)).toEqual([30, 20, 9]);
    const suspended = await app.request('GET', `/api/teams?organization_id=${organizationId}&status=suspended`);
    expect(ids(suspended.body)).toEqual([teams[2]!.teamId]);
    const search = await app.request('GET', `/api/teams?q=needle%20SUP`);
    expect(ids(search.body)).toEqual([teams[2]!.teamId]);
    const byId = await app.request('GET', `/api/teams?q=${teams[0]!.teamId.toUpperCase()}`);
    expect(ids(byId.body)).toEqual([teams[0]!.teamId]);
    // LIKE wildcards in q are taken literally.
    expect((await app.request('GET', `/api/teams?q=%25`)).body.data).toEqual([]);
  });

  it.each(['team_id', 'created_at', 'balance', 'credits_remaining', 'last_activity_at'])('pages by %s in both orders, each team once', async (sort) => {
    const organizationId = await createOrganization(app);
    const made: string[] = [];
    for (const credits of [5, 5, 7, 1, 5]) made.push((await setupTeam(app, { organizationId, credits })).teamId);
    for (const order of ['asc', 'desc']) {
      const seen = await walk(`/api/teams?organization_id=${organizationId}&sort=${sort}&order=${order}`, 2);
      expect([...seen].sort()).toEqual([...made].sort());
    }
    const byOrg = await walk(`/api/organizations/${organizationId}/teams?sort=${sort}`, 3);
    expect([...byOrg].sort()).toEqual([...made].sort());
  });

  it('refuses a cursor of another sort, and unknown organizations', async () => {
    const organizationId = await createOrganization(app);
    for (let i = 0; i < 3; i++) await setupTeam(app, { organizationId });
    const first = await app.request('GET', `/api/teams?organization_id=${organizationId}&limit=1&sort=balance`);
    expectErrorBody(await app.request('GET', `/api/teams?organization_id=${organizationId}&cursor=${first.body.next_cursor}`), 400);
    expectErrorBody(await app.request('GET', '/api/teams?cursor=not-a-cursor'), 400);
    expectErrorBody(await app.request('GET', '/api/teams?sort=secret'), 400);
    expectErrorBody(await app.request('GET', '/api/organizations/ghost-org-123/teams'), 404);
  });
});

describe('DELETE /api/teams/{team_id}', () => {
  it('archives a team without credits or open jobs: keys stop working, the ledger stays, it leaves the lists', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    const job = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'open' } });
    expect(job.status).toBe(201);

    const refusedOpen = expectErrorBody(await app.request('DELETE', `/api/teams/${setup.teamId}`), 409, 'team_has_open_jobs');
    expect(refusedOpen.message).toContain('1 open job');
    await app.request('POST', `/api/jobs/${job.body.job_id}/complete`, { token: setup.key, body: { status: 'completed' } });
    const refusedCredits = expectErrorBody(await app.request('DELETE', `/api/teams/${setup.teamId}`), 409, 'team_has_credits');
    expect(refusedCredits.message).toContain('5 credits');

    const deducted = await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { body: { credits: 5, reason: 'closing the account' } });
    expect(deducted.status).toBe(201);
    const archived = await app.request('DELETE', `/api/teams/${setup.teamId}`);
    expect(archived.status, JSON.stringify(archived.body)).toBe(200);
    expect(archived.body).toMatchObject({ team_id: setup.teamId, status: 'archived', credits: { balance: 0 } });
    expect((await app.request('DELETE', `/api/teams/${setup.teamId}`)).body.status).toBe('archived');

    expectErrorBody(await app.request('GET', `/api/teams/${setup.teamId}`, { token: setup.key }), 401);
    const keys = await app.request('GET', `/api/teams/${setup.teamId}/keys`);
    expect(keys.body.data.every((key: { status: string }) => key.status === 'revoked')).toBe(true);
    const ledger = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions`);
    expect(ledger.body.data.map((entry: { type: string }) => entry.type)).toEqual(['adjustment', 'release', 'hold', 'grant']);

    expect(ids((await app.request('GET', `/api/teams?organization_id=${setup.organizationId}`)).body)).toEqual([]);
    expect(ids((await app.request('GET', `/api/teams?organization_id=${setup.organizationId}&status=archived`)).body)).toEqual([setup.teamId]);
    expectErrorBody(await app.request('PUT', `/api/teams/${setup.teamId}/resume`), 409, 'team_archived');
    expectErrorBody(await app.request('POST', `/api/teams/${setup.teamId}/keys`, { body: {} }), 409, 'team_archived');
    expectErrorBody(await app.request('POST', `/api/credits/teams/${setup.teamId}/add`, { body: { credits: 1, reason: 'x' } }), 409, 'team_archived');
    expectErrorBody(await app.request('PATCH', `/api/teams/${setup.teamId}`, { body: { team_alias: 'revived' } }), 409, 'team_archived');
    expectErrorBody(await app.request('PATCH', `/api/credits/teams/${setup.teamId}/budget-mode`, { body: { budget_mode: 'job_based', credits_per_job: 2 } }), 409, 'team_archived');
    expect((await app.request('GET', `/api/teams/${setup.teamId}`)).body).toMatchObject({ team_alias: null, credits_per_job: 1, status: 'archived' });
    expectErrorBody(await app.request('DELETE', '/api/teams/ghost-team-404'), 404);
  });
});

describe('PATCH /api/teams/{team_id}', () => {
  it('replaces the model groups: the next call goes to the new default group, the old one is refused; an unknown group changes nothing', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const large = await createModelGroup(app, uniqueId('group'), ['sim-large']);

    const patched = await app.request('PATCH', `/api/teams/${setup.teamId}`, { body: { model_groups: [large] } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.model_groups).toEqual([large]);
    const call = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'chat', messages: [{ role: 'user', content: 'Hello' }] },
    });
    expect(call.status, JSON.stringify(call.body)).toBe(201);
    expect(call.body.metadata).toMatchObject({ model_requested: large, model_used: 'sim-large' });
    const oldGroup = await app.request('POST', '/api/jobs/create-and-call', {
      token: setup.key,
      body: { team_id: setup.teamId, job_type: 'chat', model: setup.group, messages: [{ role: 'user', content: 'Hello' }] },
    });
    expect(expectErrorBody(oldGroup, 403).message).toContain(setup.group);

    const unknown = expectErrorBody(await app.request('PATCH', `/api/teams/${setup.teamId}`, { body: { model_groups: [setup.group, 'no-such-group'] } }), 400, 'unknown_model_group');
    expect(unknown.param).toBe('model_groups');
    expect((await app.request('GET', `/api/teams/${setup.teamId}`)).body.model_groups).toEqual([large]);
  });
});

describe('jobs', () => {
  it('lists jobs newest first with their calls summed, by team, status, type and time, in keyset pages', async () => {
    const a = await setupTeam(app, { credits: 50 });
    const b = await setupTeam(app, { credits: 50 });
    const made: string[] = [];
    for (const [team, type] of [[a, 'chat'], [b, 'chat'], [a, 'summary'], [a, 'chat'], [b, 'summary']] as const) made.push(await oneShot(team, type));
    const open = await app.request('POST', '/api/jobs/create', { token: a.key, body: { team_id: a.teamId, job_type: 'chat' } });
    made.push(open.body.job_id);

    const teamA = await app.request('GET', `/api/teams/${a.teamId}/jobs`);
    expect(teamA.status).toBe(200);
    expect(ids(teamA.body)).toEqual([made[5], made[3], made[2], made[0]]);
    expect(teamA.body.data[1]).toMatchObject({ team_id: a.teamId, job_type: 'chat', status: 'completed', total_calls: 1, credits_charged: 1 });
    expect(teamA.body.data[1].total_tokens).toBeGreaterThan(0);
    expect(teamA.body.data[0]).toMatchObject({ status: 'pending', total_calls: 0, credits_reserved: 1, credits_charged: 0 });

    expect(ids((await app.request('GET', `/api/jobs?team_id=${a.teamId}&status=pending`)).body)).toEqual([made[5]]);
    expect(ids((await app.request('GET', `/api/jobs?team_id=${b.teamId}&job_type=summary`)).body)).toEqual([made[4]]);
    const since = (await query(app, 'SELECT created_at::text AS at FROM jobs WHERE id = $1', [made[3]]))[0].at as string;
    const recent = await app.request('GET', `/api/jobs?team_id=${a.teamId}&from=${encodeURIComponent(new Date(since).toISOString())}`);
    expect(ids(recent.body)).toEqual([made[5], made[3]]);
    expect(await walk(`/api/teams/${a.teamId}/jobs`, 1)).toEqual([made[5], made[3], made[2], made[0]]);

    // Two jobs created in the same microsecond keep their order by id across pages.
    await query(app, 'UPDATE jobs SET created_at = $1 WHERE id = ANY($2)', ['2026-01-01T00:00:00.123456Z', [made[1], made[4]]]);
    const sameInstant = await walk(`/api/teams/${b.teamId}/jobs`, 1);
    expect(sameInstant).toEqual([made[1], made[4]].sort().reverse());

    expectErrorBody(await app.request('GET', '/api/jobs?team_id=ghost-team-404'), 404);
    expectErrorBody(await app.request('GET', '/api/jobs?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z'), 400);
    expectErrorBody(await app.request('GET', '/api/jobs?status=lost'), 400);
  });

  it("an admin reads any team's job with its calls, cancels an open one and edits its metadata", async () => {
    const setup = await setupTeam(app, { credits: 10 });
    app.upstream.enqueue({ steps: [{ type: 'content', text: '<b>not html</b>' }], usage: { prompt_tokens: 5, completion_tokens: 4 } });
    const done = await oneShot(setup);
    const job = await app.request('GET', `/api/jobs/${done}`);
    expect(job.status).toBe(200);
    expect(job.body.calls).toHaveLength(1);
    expect(job.body.calls[0]).toMatchObject({ response_content: '<b>not html</b>', total_tokens: 9, status: 'success' });

    const open = await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'chat', metadata: { ticket: 'T-1', keep: true } } });
    const cancelled = await app.request('POST', `/api/jobs/${open.body.job_id}/cancel`);
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', costs: { credits_charged: 0 } });
    expect((await balanceOf(app, setup.teamId)).held).toBe(0);

    const edited = await app.request('PATCH', `/api/jobs/${open.body.job_id}/metadata`, { body: { metadata: { ticket: null, reviewer: 'ops' } } });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    expect(edited.body.metadata).toEqual({ keep: true, reviewer: 'ops' });
    expectErrorBody(await app.request('PATCH', '/api/jobs/job_000000000000000000000/metadata', { body: { metadata: {} } }), 404);
  });
});

describe('credits', () => {
  it('deducts with a reason, once per Idempotency-Key, never into held credits', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const headers = { 'idempotency-key': uniqueId('deduct') };
    const first = await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { headers, body: { credits: 3, reason: 'goodwill reversal' } });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body.transaction).toMatchObject({ type: 'adjustment', amount: -3, reason: 'goodwill reversal', actor: 'admin:master_key' });
    expect(first.body.balance).toMatchObject({ balance: 7, credits_remaining: 7 });
    const replay = await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { headers, body: { credits: 3, reason: 'goodwill reversal' } });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(first.body);
    expectErrorBody(await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { headers, body: { credits: 4, reason: 'goodwill reversal' } }), 409);

    // An open job holds 1 credit: at most 6 of the 7 can go.
    await app.request('POST', '/api/jobs/create', { token: setup.key, body: { team_id: setup.teamId, job_type: 'open' } });
    const refused = expectErrorBody(await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { body: { credits: 7, reason: 'too much' } }), 409, 'exceeds_available_credits');
    expect(refused.message).toContain('6 available');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 7, held: 1 });
    expect((await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { body: { credits: 6, reason: 'all of it' } })).status).toBe(201);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 1, held: 1, credits_remaining: 0 });
    expectErrorBody(await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { body: { credits: 0, reason: 'none' } }), 400);
    expectErrorBody(await app.request('POST', '/api/credits/teams/ghost-team-404/deduct', { body: { credits: 1, reason: 'x' } }), 404);
  });

  it('filters the ledger, exports it as CSV (formulas neutralised) and draws the balance by day', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    await app.request('POST', `/api/credits/teams/${setup.teamId}/add`, { body: { credits: 5, reason: '=HYPERLINK("http://x","y"), "quoted"' } });
    await app.request('POST', `/api/credits/teams/${setup.teamId}/deduct`, { body: { credits: 2, reason: 'fee' } });
    await oneShot(setup);

    const grants = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions?type=grant`);
    expect(grants.body.data.map((entry: { amount: number }) => entry.amount)).toEqual([5, 10]);
    const future = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions?from=2100-01-01T00:00:00Z`);
    expect(future.body.data).toEqual([]);

    const csv = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions.csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.headers.get('content-disposition')).toBe(`attachment; filename="${setup.teamId}-ledger.csv"`);
    const lines = (csv.body as string).trimEnd().split('\r\n');
    expect(lines[0]).toBe('transaction_id,created_at,type,amount,held_change,balance_after,held_after,job_id,reason,actor');
    expect(lines.slice(1).map((line) => line.split(',')[2])).toEqual(['grant', 'grant', 'adjustment', 'hold', 'charge']);
    expect(lines[2]).toContain(`,"'=HYPERLINK(""http://x"",""y""), ""quoted""",admin:master_key`);
    expect(lines[3]).toContain(',adjustment,-2,0,13,0,,fee,');
    const adjustments = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions.csv?type=adjustment`);
    expect((adjustments.body as string).trimEnd().split('\r\n')).toHaveLength(2);
    const team = await app.request('GET', `/api/credits/teams/${setup.teamId}/transactions.csv`, { token: setup.key });
    expect(team.body).toBe(csv.body);

    const history = await app.request('GET', `/api/credits/teams/${setup.teamId}/balance-history?from=${new Date(Date.now() - 2 * 86_400_000).toISOString()}`);
    expect(history.status, JSON.stringify(history.body)).toBe(200);
    expect(history.body.points).toHaveLength(3);
    expect(history.body.points[0]).toMatchObject({ balance: 0, held: 0, credits_in: 0, credits_out: 0 });
    expect(history.body.points[2]).toMatchObject({ balance: 12, held: 0, credits_in: 15, credits_out: 3 });
  });

  it('answers usage by calendar month', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const job = await oneShot(setup);
    await query(app, "UPDATE jobs SET created_at = '2026-03-15T12:00:00Z' WHERE id = $1", [job]);
    const march = await app.request('GET', `/api/teams/${setup.teamId}/usage?period=2026-03`);
    expect(march.status, JSON.stringify(march.body)).toBe(200);
    expect(march.body).toMatchObject({ from: '2026-03-01T00:00:00.000Z', to: '2026-04-01T00:00:00.000Z', totals: { jobs: 1, calls: 1, credits_charged: 1 } });
    expect((await app.request('GET', `/api/teams/${setup.teamId}/usage?period=2026-04`)).body.totals.jobs).toBe(0);
    expectErrorBody(await app.request('GET', `/api/teams/${setup.teamId}/usage?period=2026-13`), 400);
    expectErrorBody(await app.request('GET', `/api/teams/${setup.teamId}/usage?period=2026-03&from=2026-03-01T00:00:00Z`), 400);
  });
});

describe('first run', () => {
  it('says whether an admin user exists, to anyone, and nothing more', async () => {
    const before = await app.request('GET', '/api/admin-users/exists', { token: null });
    expect(before.status).toBe(200);
    expect(before.body).toEqual({ admin_users_exist: false });
    await app.request('POST', '/api/admin-users/create', { body: { email: `${uniqueId('ops')}@example.test`, password: 'a long passphrase' } });
    expect((await app.request('GET', '/api/admin-users/exists', { token: null })).body).toEqual({ admin_users_exist: true });
  });
});
