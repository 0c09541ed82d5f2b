import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { openStream, safeJson } from '../helpers/sse.js';
import { maxOverlap } from '../helpers/upstream.js';
import { sleep } from '../helpers/wait.js';
import { CHAT, api, freshDatabase, fundedTeam, isErrorShape, slowStream, spawnServer, stopAllServers, type FreshDatabase, type ServerProcess } from './support.js';

/**
 * Two creditgate processes on one database, 50 clients hammering one team past its per-minute and concurrency
 * limits: the instances together admit no more than the limits (the per-minute windows are shared through
 * PostgreSQL, the concurrency counts live on the team's balance row), every refusal is a 429 with Retry-After, and
 * the official openai SDK, refused, backs off by itself and succeeds once the window opens.
 */

const REQUESTS_PER_MINUTE = 20;
const MAX_CONCURRENT_CALLS = 4;
const CLIENTS = 50;

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let servers: [ServerProcess, ServerProcess];

beforeAll(async () => {
  [db, upstream] = await Promise.all([freshDatabase(), startSimulatedUpstream()]);
  servers = (await Promise.all([0, 1].map(() => spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL })))) as [ServerProcess, ServerProcess];
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
});

/** Waits until at least `margin` ms of the current minute are left, so a burst stays within one window. */
async function atStartOfAMinute(margin = 15_000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < margin) await sleep(left + 200);
}

describe('limits held by two instances together', () => {
  it(`${CLIENTS} clients on both instances: at most ${REQUESTS_PER_MINUTE} calls a minute and ${MAX_CONCURRENT_CALLS} at once, every refusal a 429 with Retry-After`, async () => {
    const team = await fundedTeam(servers[0].url, 1_000, {
      team: { limits: { requests_per_minute: REQUESTS_PER_MINUTE, max_concurrent_calls: MAX_CONCURRENT_CALLS } },
    });
    upstream.setResponder(() => slowStream(4, 100));
    await atStartOfAMinute();
    const before = upstream.requests.length;
    // Every client keeps calling through the minute's first seconds, alternating instances and routes.
    const results = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        const outcomes: { status: number; retryAfter: string | null; body: unknown }[] = [];
        for (let round = 0; round < 3; round++) {
          const server = servers[(client + round) % 2]!;
          const path = round % 2 === 0 ? '/api/jobs/create-and-call-stream' : '/v1/chat/completions';
          const body = path.startsWith('/v1') ? { model: team.group, ...CHAT, stream: true } : { team_id: team.teamId, job_type: 'hammer', ...CHAT };
          const result = await openStream(server, path, team.key, body).done;
          outcomes.push({ status: result.status, retryAfter: result.headers?.get('retry-after') ?? null, body: safeJson(result.text) });
        }
        return outcomes;
      }),
    );
    const all = results.flat();
    const admitted = all.filter((outcome) => outcome.status === 200);
    const refused = all.filter((outcome) => outcome.status !== 200);
    expect(admitted.length).toBeGreaterThan(0);
    expect(admitted.length, 'admitted calls, both instances together').toBeLessThanOrEqual(REQUESTS_PER_MINUTE);
    for (const outcome of refused) {
      expect(outcome.status, JSON.stringify(outcome.body)).toBe(429);
      expect(isErrorShape(outcome.body)).toBe(true);
      expect(['requests_per_minute_limit', 'concurrent_calls_limit']).toContain((outcome.body as { error: { code: string } }).error.code);
      expect(Number(outcome.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(outcome.retryAfter)).toBeLessThanOrEqual(60);
    }
    // What reached the upstream: exactly the admitted calls, never more than the concurrency limit at once.
    const sent = upstream.requests.slice(before);
    expect(sent).toHaveLength(admitted.length);
    expect(maxOverlap(sent)).toBeLessThanOrEqual(MAX_CONCURRENT_CALLS);
    await expectLedgerConsistent(db.pool, team.teamId, { jobs: true });
  });

  it('the official openai SDK, refused for the rest of the minute, backs off by itself and succeeds when the window opens', async () => {
    const team = await fundedTeam(servers[1].url, 100, { team: { limits: { requests_per_minute: 2 } } });
    upstream.setResponder(undefined);
    // Spend the minute's two calls, so the SDK's first attempt is refused.
    for (let i = 0; i < 2; i++) {
      const spent = await api(servers[i % 2]!.url, 'POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, ...CHAT } });
      expect(spent.status, JSON.stringify(spent.body)).toBe(200);
      expect(spent.headers.get('x-ratelimit-limit-requests')).toBe('2');
    }
    const refusal = await api(servers[0].url, 'POST', '/v1/chat/completions', { token: team.key, body: { model: team.group, ...CHAT } });
    expect(refusal.status).toBe(429);
    expect(refusal.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(refusal.headers.get('x-ratelimit-remaining-requests')).toBe('0');

    const client = new OpenAI({ baseURL: `${servers[0].url}/v1`, apiKey: team.key, maxRetries: 3, timeout: 150_000 });
    const startedAt = Date.now();
    const completion = await client.chat.completions.create({ model: team.group, messages: [{ role: 'user', content: 'Hello' }] });
    expect(completion.choices[0]?.message.content).toBeTruthy();
    // It got through only once the minute (the window) had turned.
    expect(Math.floor(Date.now() / 60_000)).toBeGreaterThan(Math.floor(startedAt / 60_000));
  }, 180_000);
});
