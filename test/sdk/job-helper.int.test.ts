import type { ChatCompletionChunk as OpenAIChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AdminClient, APIUserAbortError, CreditgateClient, type ChatCompletionChunk } from '@creditgate/client';
import { createTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { uniqueId } from '../helpers/factories.js';

/**
 * What the package adds to the SDK: the `job()` helper, the settled job's costs at the top level, and the caller's
 * AbortSignal governing an open stream (followed by hand, as Node 18 lacks AbortSignal.any).
 */

let app: TestApp;
let admin: AdminClient;
beforeAll(async () => {
  app = await createTestApp();
  admin = new AdminClient({ baseUrl: app.url, apiKey: TEST_MASTER_KEY });
});
afterAll(() => app?.close());

async function newTeam(credits = 5) {
  const { organization_id: organizationId } = await admin.organizations.create({ organization_id: uniqueId('org'), name: 'Job helper' });
  const { group_name: group } = await admin.modelGroups.create({ group_name: uniqueId('group'), models: [{ model_name: 'sim-small', priority: 0 }] });
  const team = await admin.teams.create({ organization_id: organizationId, team_id: uniqueId('team'), model_groups: [group], credits_allocated: credits });
  return { teamId: team.team_id, client: new CreditgateClient({ baseUrl: app.url, apiKey: team.virtual_key }) };
}

const messages = [{ role: 'user' as const, content: 'Say something' }];

// Checked by tsc: the chunks the server relays are OpenAI's, so the package's own declaration must accept openai's type.
void (undefined as unknown as OpenAIChatCompletionChunk satisfies ChatCompletionChunk);

describe('job()', () => {
  it('completes the job when the callback resolves, returns its result, and exposes the costs at the top level', async () => {
    const { client, teamId } = await newTeam(5);
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'first' }] });
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'second' }] });
    const { result, completed } = await client.job({ team_id: teamId, job_type: 'two-calls' }, async (job) => {
      expect(job.created).toMatchObject({ job_id: job.jobId, status: 'pending' });
      const one = await job.llmCall({ messages });
      const stream = await job.chatStream({ messages });
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks[0]?.object).toBe('chat.completion.chunk');
      expect((await job.get()).status).not.toBe('completed');
      return `${one.response.choices[0]?.message.content} ${stream.text}`;
    }, { completionMetadata: { source: 'job-helper' } });
    expect(result).toBe('first second');
    expect(completed).toMatchObject({ status: 'completed', total_calls: 2, credits_charged: 1, credits_remaining: 4 });
    expect(completed.total_calls).toBe(completed.costs.total_calls);
    expect(completed.credits_remaining).toBe(completed.costs.credits_remaining);
    const job = await client.getJob(completed.job_id);
    expect(job).toMatchObject({ status: 'completed', metadata: { source: 'job-helper' } });
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 4, held: 0 });
  });

  it('fails the job when the callback throws, rethrows the same error, and a job that delivered nothing is free', async () => {
    const { client, teamId } = await newTeam(5);
    let jobId = '';
    const thrown = new Error('the document could not be parsed');
    const caught = await client
      .job({ team_id: teamId, job_type: 'throws' }, async (job) => {
        jobId = job.jobId;
        throw thrown;
      })
      .catch((error: unknown) => error);
    expect(caught).toBe(thrown);
    expect(await client.getJob(jobId)).toMatchObject({ status: 'failed', error_message: 'the document could not be parsed', costs: { credits_charged: 0 } });
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 5, held: 0 });
  });

  it('stops a stream the callback left open when it throws: the upstream request closes, the job is failed and billed for what was delivered', async () => {
    const { client, teamId } = await newTeam(5);
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'partial' }, { type: 'hang' }] });
    const before = app.upstream.requests.length;
    let jobId = '';
    const caught = await client
      .job({ team_id: teamId, job_type: 'throws-mid-stream' }, async (job) => {
        jobId = job.jobId;
        const stream = await job.chatStream({ messages });
        const iterator = stream[Symbol.asyncIterator]();
        while (!stream.text) await iterator.next();
        throw new Error('the reader gave up');
      })
      .catch((error: unknown) => error);
    expect((caught as Error).message).toBe('the reader gave up');
    const [request] = (await app.upstream.waitForRequests(before + 1)).slice(before);
    expect((await app.upstream.waitForClosed(request!.id)).abortedByClient).toBe(true);
    const job = await client.getJob(jobId);
    expect(job).toMatchObject({ status: 'failed', error_message: 'the reader gave up', calls: [{ status: 'cancelled', response_content: 'partial' }] });
    // Output was delivered, and the team does not waive failed jobs: credits_per_job.
    expect(job.costs.credits_charged).toBe(1);
    expect(await client.getBalance(teamId)).toMatchObject({ balance: 4, held: 0 });
  });

  it('completes the job when the callback returns with a stream it did not finish', async () => {
    const { client, teamId } = await newTeam(5);
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'started' }, { type: 'hang' }] });
    const { completed } = await client.job({ team_id: teamId, job_type: 'returns-early' }, async (job) => {
      const stream = await job.chatStream({ messages });
      // Read by hand and left open (a for-await loop would disconnect on leaving): job() must stop it.
      const iterator = stream[Symbol.asyncIterator]();
      while (!stream.text) await iterator.next();
    });
    expect(completed).toMatchObject({ status: 'completed', total_calls: 1, credits_charged: 1, credits_remaining: 4 });
    expect(completed.calls[0]).toMatchObject({ status: 'cancelled', response_content: 'started' });
  });

  it('completeJob, cancelJob and createAndCall put the costs at the top level too', async () => {
    const { client, teamId } = await newTeam(5);
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'one shot' }] });
    const oneShot = await client.createAndCall({ team_id: teamId, job_type: 'flat', messages });
    expect(oneShot).toMatchObject({ status: 'completed', total_calls: 1, credits_charged: 1, credits_remaining: 4 });
    const { job_id: open } = await client.createJob({ team_id: teamId, job_type: 'cancelled' });
    expect(await client.cancelJob(open)).toMatchObject({ status: 'cancelled', total_calls: 0, credits_charged: 0, credits_remaining: 4 });
    const { job_id: empty } = await client.createJob({ team_id: teamId, job_type: 'empty' });
    const completed = await client.completeJob(empty, { status: 'completed' });
    expect(completed.total_calls).toBe(0);
    expect(completed.credits_remaining).toBe(completed.costs.credits_remaining);
  });
});

describe("the caller's AbortSignal on a stream", () => {
  it('aborting it while the stream is read ends the loop with APIUserAbortError and closes the upstream request', async () => {
    const { client, teamId } = await newTeam();
    app.upstream.enqueue({ steps: [{ type: 'content', text: 'partial' }, { type: 'hang' }] });
    const controller = new AbortController();
    const before = app.upstream.requests.length;
    const stream = await client.createAndCallStream({ team_id: teamId, job_type: 'signal-stream', messages }, { signal: controller.signal });
    const [request] = (await app.upstream.waitForRequests(before + 1)).slice(before);
    const error = await (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) controller.abort();
    })().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIUserAbortError);
    expect(stream.text).toBe('partial');
    expect((await app.upstream.waitForClosed(request!.id)).abortedByClient).toBe(true);
    await vi.waitFor(async () => expect((await client.getJob(stream.jobId!)).status).toBe('cancelled'));
  });
});
