import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, createTeam } from '../helpers/factories.js';

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp({ MAX_INFLIGHT_REQUESTS: '3' });
});
afterAll(() => app.close());

describe('load shedding', () => {
  it('answers 503 with Retry-After beyond the in-flight limit, keeps health answering, and recovers', async () => {
    const group = await createModelGroup(app);
    const team = await createTeam(app, { model_groups: [group], credits_allocated: 10 });
    // Three streams held open by a hanging upstream fill the instance.
    for (let i = 0; i < 3; i++) app.upstream.enqueue({ steps: [{ type: 'content', text: 'x' }, { type: 'hang' }] });
    const controllers = Array.from({ length: 3 }, () => new AbortController());
    const streams = controllers.map((controller) =>
      fetch(`${app.url}/api/jobs/create-and-call-stream`, {
        method: 'POST',
        signal: controller.signal,
        headers: { authorization: `Bearer ${team.virtual_key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ team_id: team.team_id, job_type: 'hold', messages: [{ role: 'user', content: 'hi' }] }),
      }),
    );
    await Promise.all(streams);
    await app.upstream.waitForRequests(3);

    const shed = await app.request('GET', `/api/teams/${team.team_id}`);
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toBe('1');
    expect(shed.body.error).toMatchObject({ type: 'api_error', code: 'overloaded' });
    expect((await app.request('GET', '/health', { token: null })).status).toBe(200);

    for (const controller of controllers) controller.abort();
    const deadline = Date.now() + 5_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await app.request('GET', `/api/teams/${team.team_id}`)).status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(status).toBe(200);
  });
});
