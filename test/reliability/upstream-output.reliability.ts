import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { TEST_MASTER_KEY, createTestApp, type TestApp } from '../helpers/app.js';
import type { TeamSetup } from '../helpers/factories.js';
import { MICRO, expectLedgerConsistent } from '../helpers/ledger.js';
import { openStream, parseSse, safeJson } from '../helpers/sse.js';
import { fundedTeam, isErrorShape, jobsOf, openCalls } from './support.js';

/**
 * What a model sends back is input too: text PostgreSQL cannot store as is (a NUL character in the content, a
 * lone surrogate in tool-call arguments) must not turn a paid call into a free one or leave it unrecorded.
 * Whatever creditgate does with such output (store it escaped, replace it, or fail the call), the client's view
 * and the books must agree: a stream that ended with [DONE] was charged exactly once, one that did not was not
 * charged, and the call and its job are settled at once (not left for the sweeper) with the ledger consistent.
 */

let app: TestApp;

beforeAll(async () => {
  app = await createTestApp();
});

afterAll(() => app?.close());

const CHAT = { messages: [{ role: 'user', content: 'hello' }] };

const OUTPUTS: { name: string; script: UpstreamScript }[] = [
  {
    name: 'a NUL character in the content',
    script: { steps: [{ type: 'content', text: 'before ' }, { type: 'content', text: 'nul:\u0000:after' }, { type: 'finish', reason: 'stop' }] },
  },
  {
    name: 'a lone surrogate in tool-call arguments',
    // JSON.stringify sends it as the escape "\ud800", which parses back into a lone surrogate.
    script: { steps: [{ type: 'tool_call', index: 0, id: 'call_1', name: 'f', arguments: '{"a":"\ud800"}' }, { type: 'finish', reason: 'tool_calls' }] },
  },
];

async function expectSettledAndConsistent(team: TeamSetup, jobId: string, clientSawDone: boolean): Promise<void> {
  const job = (await jobsOf(app, team.teamId)).find((j) => j.id === jobId);
  expect(job, `job ${jobId}`).toBeDefined();
  expect(['pending', 'in_progress'], 'the job is settled at once, not left for the sweeper').not.toContain(job!.status);
  if (clientSawDone) expect(job, 'the client saw [DONE]: charged exactly once').toMatchObject({ status: 'completed', charges: 1, charged_micro: MICRO });
  else expect(job!.charges, 'the client did not get its answer: not charged').toBe(0);
  expect(await openCalls(app, team.teamId), 'no call is left in progress').toBe(0);
  await expectLedgerConsistent(app, team.teamId, { jobs: true });
}

describe('upstream output that PostgreSQL cannot store verbatim', () => {
  for (const output of OUTPUTS) {
    it(`streamed, with ${output.name}: the client's view and the charge agree`, async () => {
      const team = await fundedTeam(app.url, 5, { masterKey: TEST_MASTER_KEY });
      app.upstream.enqueue(output.script);
      const result = await openStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'odd', ...CHAT }).done;
      expect(result.transportError).toBeUndefined();
      const jobId = result.headers?.get('x-job-id') ?? '';
      expect(jobId).toMatch(/^job_/);
      const parsed = parseSse(result.text);
      const sawDone = parsed.endsWithDone && parsed.errors.length === 0;
      expect.soft(sawDone || parsed.errors.length > 0, `the stream ends with [DONE] or an error event, not silently: ${result.text.slice(-300)}`).toBe(true);
      await expectSettledAndConsistent(team, jobId, sawDone);
    });

    it(`not streamed, with ${output.name}: the answer and the charge agree`, async () => {
      const team = await fundedTeam(app.url, 5, { masterKey: TEST_MASTER_KEY });
      app.upstream.enqueue(output.script);
      const response = await fetch(`${app.url}/api/jobs/create-and-call`, {
        method: 'POST',
        headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ team_id: team.teamId, job_type: 'odd', ...CHAT }),
      });
      const body = safeJson(await response.text()) as any;
      expect.soft(response.status, `a model's odd output is not an internal error: ${JSON.stringify(body)}`).toBeLessThan(500);
      if (response.status !== 201) expect(isErrorShape(body), JSON.stringify(body)).toBe(true);
      const jobs = await jobsOf(app, team.teamId);
      expect(jobs).toHaveLength(1);
      await expectSettledAndConsistent(team, jobs[0]!.id, response.status === 201);
    });
  }
});
