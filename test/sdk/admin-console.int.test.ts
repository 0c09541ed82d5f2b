import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient, ConflictError, CreditgateClient } from '@creditgate/client';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';

/** The AdminClient calls the operator console makes, against the real app. */

let app: TestApp;
let admin: AdminClient;
beforeAll(async () => {
  app = await createTestApp();
  admin = new AdminClient({ baseUrl: app.url, apiKey: TEST_MASTER_KEY });
});
afterAll(() => app?.close());

describe('AdminClient for the console', () => {
  it('lists and edits teams, reads and cancels jobs, deducts once per key, exports the ledger and reads the reports', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const teams = await admin.teams.list({ organization_id: setup.organizationId, sort: 'balance', order: 'desc' });
    expect(teams.data.map((team) => [team.team_id, team.balance])).toEqual([[setup.teamId, 10]]);
    expect((await admin.organizations.teams(setup.organizationId)).data).toHaveLength(1);
    expect((await admin.teams.update(setup.teamId, { team_alias: 'Support', waive_failed_jobs: true })).waive_failed_jobs).toBe(true);

    const client = new CreditgateClient({ baseUrl: app.url, apiKey: setup.key });
    const job = await client.createJob({ team_id: setup.teamId, job_type: 'draft' });
    expect((await admin.jobs.list({ team_id: setup.teamId, status: 'pending' })).data.map((row) => row.job_id)).toEqual([job.job_id]);
    expect((await admin.teams.jobs(setup.teamId)).data).toHaveLength(1);
    expect((await admin.jobs.updateMetadata(job.job_id, { metadata: { note: 'checked' } })).metadata).toEqual({ note: 'checked' });
    expect((await admin.jobs.cancel(job.job_id)).status).toBe('cancelled');
    expect((await admin.jobs.get(job.job_id)).status).toBe('cancelled');

    // One Idempotency-Key per intended deduction: sending it twice (a double-click) deducts once.
    const options = { idempotencyKey: 'console-deduct-1' };
    await admin.credits.deduct(setup.teamId, { credits: 4, reason: 'correction' }, options);
    await admin.credits.deduct(setup.teamId, { credits: 4, reason: 'correction' }, options);
    expect((await admin.credits.balance(setup.teamId)).balance).toBe(6);
    await expect(admin.credits.deduct(setup.teamId, { credits: 7, reason: 'too much' })).rejects.toBeInstanceOf(ConflictError);
    const adjustments = await admin.credits.transactions(setup.teamId, { type: 'adjustment' });
    expect(adjustments.data.map((entry) => entry.amount)).toEqual([-4]);
    const csv = await admin.credits.exportCsv(setup.teamId);
    expect(csv.split('\r\n')[0]).toMatch(/^transaction_id,created_at,type,amount/);
    expect((await admin.credits.balanceHistory(setup.teamId)).points.at(-1)).toMatchObject({ balance: 6 });

    const overview = await admin.reports.overview();
    expect(overview.credits.outstanding).toBe(6);
    expect((await admin.reports.timeseries({ granularity: 'hour', from: new Date(Date.now() - 3_600_000).toISOString() })).points.length).toBeGreaterThan(0);
    expect((await admin.reports.breakdown({ by: 'job_type' })).rows.map((row) => row.key)).toEqual(['draft']);
    expect((await admin.reports.lowCredits({ threshold: 100 })).data.map((row) => row.team_id)).toEqual([setup.teamId]);
    expect(await new AdminClient({ baseUrl: app.url }).adminUsers.exists()).toEqual({ admin_users_exist: false });

    await expect(admin.teams.delete(setup.teamId)).rejects.toMatchObject({ status: 409, code: 'team_has_credits' });
    await admin.credits.deduct(setup.teamId, { credits: 6, reason: 'closing' });
    expect((await admin.teams.delete(setup.teamId)).status).toBe('archived');
  });
});
