import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createTeam } from '../helpers/factories.js';
import { ledgerSum } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app.close());

describe('credits', () => {
  it('adds credits with a reason, reports the balance and lists the ledger newest first', async () => {
    const team = await createTeam(app, { credits_allocated: 10 });
    const added = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits: 5, reason: 'top-up' } });
    expect(added.status).toBe(201);
    expect(added.body.transaction).toMatchObject({ type: 'grant', amount: 5, balance_after: 15, reason: 'top-up', actor: 'admin:master_key' });
    expect(added.body.balance).toMatchObject({ balance: 15, held: 0, credits_remaining: 15, credits_allocated: 15, credits_used: 0 });

    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    expect(balance.status).toBe(200);
    expect(balance.body).toMatchObject({ team_id: team.team_id, balance: 15, budget_mode: 'job_based', credits_per_job: 1 });

    const transactions = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions`);
    expect(transactions.status).toBe(200);
    expect(transactions.body.data.map((t: { reason: string }) => t.reason)).toEqual(['top-up', 'initial allocation']);
    expect(transactions.body.has_more).toBe(false);
  });

  it('pages through transactions with a cursor', async () => {
    const team = await createTeam(app);
    for (let i = 1; i <= 5; i++) {
      const response = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits: i, reason: `grant ${i}` } });
      expect(response.status).toBe(201);
    }
    const first = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions?limit=2`);
    expect(first.body.data.map((t: { amount: number }) => t.amount)).toEqual([5, 4]);
    expect(first.body.has_more).toBe(true);
    const second = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data.map((t: { amount: number }) => t.amount)).toEqual([3, 2]);
    const third = await app.request('GET', `/api/credits/teams/${team.team_id}/transactions?limit=2&cursor=${second.body.next_cursor}`);
    expect(third.body.data.map((t: { amount: number }) => t.amount)).toEqual([1]);
    expect(third.body).toMatchObject({ has_more: false, next_cursor: null });
  });

  it('keeps the balance equal to the sum of the ledger after a run of random grants', async () => {
    const team = await createTeam(app, { credits_allocated: 3 });
    let expected = 3;
    for (let i = 0; i < 40; i++) {
      const credits = 1 + Math.floor(Math.random() * 1000);
      expected += credits;
      const response = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits, reason: `random ${i}` } });
      expect(response.status).toBe(201);
      expect(response.body.transaction.balance_after).toBe(expected);
    }
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    const sum = await ledgerSum(app, team.team_id, { entries: true });
    expect(balance.body.balance).toBe(expected);
    expect(sum).toEqual({ balance: expected, held: 0, entries: 41 });
  });

  it('loses no concurrent add', async () => {
    const team = await createTeam(app);
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body: { credits: 2, reason: `concurrent ${i}` } }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(201));
    // Every entry saw a distinct balance: no two updates read the same starting point.
    const balancesAfter = responses.map((r) => r.body.transaction.balance_after).sort((a, b) => a - b);
    expect(balancesAfter).toEqual(Array.from({ length: 50 }, (_, i) => 2 * (i + 1)));
    const balance = await app.request('GET', `/api/credits/teams/${team.team_id}/balance`);
    expect(balance.body.balance).toBe(100);
    expect(await ledgerSum(app, team.team_id, { entries: true })).toEqual({ balance: 100, held: 0, entries: 50 });
  });

  it('replays an add retried with the same Idempotency-Key, also when the retries race', async () => {
    const team = await createTeam(app);
    const add = () =>
      app.request('POST', `/api/credits/teams/${team.team_id}/add`, {
        body: { credits: 7, reason: 'invoice 42' },
        headers: { 'Idempotency-Key': 'invoice-42' },
      });
    const responses = await Promise.all(Array.from({ length: 10 }, add));
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(201));
    const transactionIds = new Set(responses.map((r) => r.body.transaction.transaction_id));
    expect(transactionIds.size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(9);
    expect((await ledgerSum(app, team.team_id)).balance).toBe(7);

    const later = await add();
    expect(later.body).toEqual(responses[0]!.body);
    expect((await ledgerSum(app, team.team_id, { entries: true })).entries).toBe(1);
  });

  it('rejects an Idempotency-Key reused with another body and changes nothing', async () => {
    const team = await createTeam(app);
    const path = `/api/credits/teams/${team.team_id}/add`;
    const headers = { 'Idempotency-Key': 'reused-key' };
    expect((await app.request('POST', path, { body: { credits: 1, reason: 'first' }, headers })).status).toBe(201);
    const reused = await app.request('POST', path, { body: { credits: 1000, reason: 'second' }, headers });
    expect(reused.status).toBe(409);
    expect(reused.body.error).toMatchObject({ type: 'invalid_request_error', code: 'idempotency_key_reused' });
    expect((await ledgerSum(app, team.team_id)).balance).toBe(1);
  });

  it('keeps idempotency keys of different callers apart', async () => {
    const a = await createTeam(app);
    const b = await createTeam(app);
    const headers = { 'Idempotency-Key': 'same-key' };
    const first = await app.request('POST', `/api/credits/teams/${a.team_id}/add`, { body: { credits: 1, reason: 'x' }, headers });
    expect(first.status).toBe(201);
    // Same admin scope, different request: a conflict, not a replay of team a's answer.
    const second = await app.request('POST', `/api/credits/teams/${b.team_id}/add`, { body: { credits: 1, reason: 'x' }, headers });
    expect(second.status).toBe(409);
    expect((await ledgerSum(app, b.team_id)).balance).toBe(0);
  });

  it('rejects invalid amounts without touching the ledger', async () => {
    const team = await createTeam(app, { credits_allocated: 5 });
    for (const body of [{ credits: -5, reason: 'x' }, { credits: 1.5, reason: 'x' }, { credits: '5', reason: 'x' }, { credits: 5 }, { credits: 5, reason: '' }]) {
      const response = await app.request('POST', `/api/credits/teams/${team.team_id}/add`, { body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error.type).toBe('invalid_request_error');
      expect(response.body.error.param).toMatch(/credits|reason/);
    }
    expect(await ledgerSum(app, team.team_id, { entries: true })).toEqual({ balance: 5, held: 0, entries: 1 });
    const missing = await app.request('POST', '/api/credits/teams/no-such-team/add', { body: { credits: 1, reason: 'x' } });
    expect(missing.status).toBe(404);
  });

  it('sets the budget mode and requires the rate of a consumption mode', async () => {
    const team = await createTeam(app);
    const path = `/api/credits/teams/${team.team_id}/budget-mode`;
    const missingRate = await app.request('PATCH', path, { body: { budget_mode: 'consumption_tokens' } });
    expect(missingRate.status).toBe(400);
    expect(missingRate.body.error).toMatchObject({ code: 'missing_rate', param: 'tokens_per_credit' });

    const tokens = await app.request('PATCH', path, { body: { budget_mode: 'consumption_tokens', tokens_per_credit: 1000 } });
    expect(tokens.status).toBe(200);
    expect(tokens.body).toMatchObject({ budget_mode: 'consumption_tokens', tokens_per_credit: 1000 });

    const usd = await app.request('PATCH', path, { body: { budget_mode: 'consumption_usd', credits_per_dollar: '2.5' } });
    expect(usd.status).toBe(200);
    expect(usd.body).toMatchObject({ budget_mode: 'consumption_usd', credits_per_dollar: '2.500000', tokens_per_credit: 1000 });

    const back = await app.request('PATCH', path, { body: { budget_mode: 'job_based', credits_per_job: 3 } });
    expect(back.body).toMatchObject({ budget_mode: 'job_based', credits_per_job: 3 });

    const bad = await app.request('PATCH', path, { body: { budget_mode: 'consumption_usd', credits_per_dollar: -1 } });
    expect(bad.status).toBe(400);
    const unknownMode = await app.request('PATCH', path, { body: { budget_mode: 'free' } });
    expect(unknownMode.status).toBe(400);
    expect(unknownMode.body.error.param).toBe('budget_mode');
  });

  it('refuses to edit or delete ledger entries in the database itself', async () => {
    const team = await createTeam(app, { credits_allocated: 5 });
    await expect(query(app, 'UPDATE credit_ledger SET amount_micro = 0 WHERE team_id = $1', [team.team_id])).rejects.toThrow(/append-only/);
    await expect(query(app, 'DELETE FROM credit_ledger WHERE team_id = $1', [team.team_id])).rejects.toThrow(/append-only/);
    await expect(
      query(app, 'UPDATE credit_balances SET held_micro = balance_micro + 1 WHERE team_id = $1', [team.team_id]),
    ).rejects.toThrow(/credit_balances_available_non_negative/);
    expect(await ledgerSum(app, team.team_id, { entries: true })).toEqual({ balance: 5, held: 0, entries: 1 });
  });
});
