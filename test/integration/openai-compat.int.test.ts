import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UpstreamScript } from '../../src/upstream/simulated-server.js';
import { balanceOf, getJob, waitForJobStatus } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createModelGroup, setupTeam, uniqueId } from '../helpers/factories.js';
import { upstreamRequest, weatherToolScript } from '../helpers/upstream.js';

/**
 * The OpenAI-compatible API driven by the official `openai` npm package, as a customer would: `baseURL` is
 * creditgate's `/v1` and the API key is a team virtual key. Every request is a `chat_completion` job, billed
 * like create-and-call; errors reach the SDK as its own typed errors.
 */

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------
// helpers

const clientFor = (key: string) => new OpenAI({ apiKey: key, baseURL: `${app.url}/v1`, maxRetries: 0, timeout: 20_000 });

const messages = (text = 'Say something'): OpenAI.Chat.ChatCompletionMessageParam[] => [{ role: 'user', content: text }];

const script = (parts: string[], usage: { prompt_tokens: number; completion_tokens: number }, delayMs = 0): UpstreamScript => ({
  steps: parts.map((text) => ({ type: 'content' as const, text, delayMs })),
  usage,
});

/** What a promise rejected with (fails the test when it resolves). */
async function rejectionOf(promise: Promise<unknown>): Promise<any> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

const contentOf = (chunks: ChatCompletionChunk[]) => chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('');

const weatherTools: ChatCompletionTool[] = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
  },
];

const expectedToolCalls = [{ id: 'call_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }];

// ---------------------------------------------------------------------------------------------------------

describe('models', () => {
  it("lists the team's model groups and the models inside them, and nothing else", async () => {
    const second = await createModelGroup(app, uniqueId('second'), ['gpt-4o']);
    await createModelGroup(app, uniqueId('unassigned'), ['claude-3-5-sonnet']);
    const setup = await setupTeam(app, { models: ['sim-small', 'sim-large'], extraGroups: [second] });

    const page = await clientFor(setup.key).models.list();
    const ids = page.data.map((model) => model.id);
    expect([...ids].sort()).toEqual([setup.group, second, 'sim-small', 'sim-large', 'gpt-4o'].sort());
    expect(new Set(ids).size).toBe(ids.length);
    for (const model of page.data) {
      expect(model).toMatchObject({ object: 'model', created: expect.any(Number), owned_by: expect.any(String) });
    }
    // Auto-pagination works on the list too.
    const iterated: string[] = [];
    for await (const model of clientFor(setup.key).models.list()) iterated.push(model.id);
    expect(iterated).toEqual(ids);
  });
});

describe('chat completions', () => {
  it('answers a non-streamed request with content and usage, and bills one credit per request as a chat_completion job', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const client = clientFor(setup.key);
    const before = app.upstream.requests.length;

    app.upstream.enqueue(script(['Hello ', 'from ', 'the SDK'], { prompt_tokens: 12, completion_tokens: 3 }));
    const { data: completion, response } = await client.chat.completions
      .create({ model: setup.group, messages: messages('Hello?'), temperature: 0.3, max_tokens: 40 })
      .withResponse();
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'sim-small',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the SDK' }, finish_reason: 'stop' }],
    });
    expect(completion.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
    expect(app.upstream.requests[before]!.body).toMatchObject({ model: 'sim-small', temperature: 0.3, max_tokens: 40, messages: messages('Hello?') });

    const jobId = response.headers.get('x-job-id');
    expect(jobId).toMatch(/^job_[a-z0-9]{21}$/);
    expect(response.headers.get('x-call-id')).toMatch(/^call_[a-z0-9]{21}$/);
    const job = await getJob(app, setup, jobId!);
    expect(job).toMatchObject({ job_type: 'chat_completion', status: 'completed', costs: { total_calls: 1, credits_charged: 1, credit_applied: true } });
    expect(job.calls[0]).toMatchObject({ status: 'success', streamed: false, response_content: 'Hello from the SDK', prompt_tokens: 12, completion_tokens: 3 });
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0 });

    // A second request, then a streamed one: one credit each.
    app.upstream.enqueue(script(['Again'], { prompt_tokens: 5, completion_tokens: 1 }));
    const again = await client.chat.completions.create({ model: setup.group, messages: messages() });
    expect(again.choices[0]!.message.content).toBe('Again');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 8, held: 0 });
    app.upstream.enqueue(script(['Streamed'], { prompt_tokens: 5, completion_tokens: 1 }));
    const stream = await client.chat.completions.create({ model: setup.group, messages: messages(), stream: true });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(contentOf(chunks)).toBe('Streamed');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 7, held: 0, credits_used: 3 });

    const usage = await app.request('GET', `/api/teams/${setup.teamId}/usage`, { token: setup.key });
    expect(usage.status, JSON.stringify(usage.body)).toBe(200);
    expect(usage.body.by_job_type).toEqual([
      { job_type: 'chat_completion', jobs: 3, calls: 3, total_tokens: 15 + 6 + 6, cost_usd: expect.any(Number), credits_charged: 3 },
    ]);
    expect(usage.body.totals).toMatchObject({ jobs: 3, calls: 3, credits_charged: 3 });
  });

  it('streams with create({stream: true}): the scripted text, and a usage-only last chunk only with include_usage', async () => {
    const setup = await setupTeam(app);
    const client = clientFor(setup.key);

    app.upstream.enqueue(script(['One ', 'two ', 'three'], { prompt_tokens: 9, completion_tokens: 3 }));
    const plain = await client.chat.completions.create({ model: setup.group, messages: messages('Count'), stream: true });
    const plainChunks: ChatCompletionChunk[] = [];
    for await (const chunk of plain) plainChunks.push(chunk);
    expect(contentOf(plainChunks)).toBe('One two three');
    expect(plainChunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true);
    expect(plainChunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(plainChunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(plainChunks.filter((chunk) => chunk.choices.length === 0)).toEqual([]);
    expect(plainChunks.some((chunk) => chunk.usage)).toBe(false);

    app.upstream.enqueue(script(['Alpha ', 'beta'], { prompt_tokens: 7, completion_tokens: 2 }));
    const withUsage = await client.chat.completions.create({
      model: setup.group,
      messages: messages(),
      stream: true,
      stream_options: { include_usage: true },
    });
    const usageChunks: ChatCompletionChunk[] = [];
    for await (const chunk of withUsage) usageChunks.push(chunk);
    expect(contentOf(usageChunks)).toBe('Alpha beta');
    const last = usageChunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 });
    expect(usageChunks.filter((chunk) => chunk.choices.length === 0)).toHaveLength(1);
    expect(usageChunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
  });

  it("works with the SDK's streaming helper: content events and finalChatCompletion()", async () => {
    const setup = await setupTeam(app);
    const parts = ['The ', 'helper ', 'assembles ', 'this.'];
    app.upstream.enqueue(script(parts, { prompt_tokens: 8, completion_tokens: 4 }, 20));
    const runner = clientFor(setup.key).chat.completions.stream({ model: setup.group, messages: messages('Helper?') });
    const deltas: string[] = [];
    let snapshot = '';
    runner.on('content', (delta, current) => {
      deltas.push(delta);
      snapshot = current;
    });
    const final = await runner.finalChatCompletion();
    expect(deltas.filter((delta) => delta !== '')).toEqual(parts);
    expect(snapshot).toBe(parts.join(''));
    expect(final.choices[0]).toMatchObject({ finish_reason: 'stop', message: { role: 'assistant', content: parts.join('') } });
    expect(await runner.finalContent()).toBe(parts.join(''));
  });

  it('returns tool calls non-streamed, and the streaming helper reassembles them with finish_reason tool_calls', async () => {
    const setup = await setupTeam(app);
    const client = clientFor(setup.key);
    const before = app.upstream.requests.length;

    app.upstream.enqueue(weatherToolScript());
    const plain = await client.chat.completions.create({ model: setup.group, messages: messages('Weather in Paris?'), tools: weatherTools, tool_choice: 'auto' });
    expect(plain.choices[0]!.finish_reason).toBe('tool_calls');
    expect(plain.choices[0]!.message.tool_calls).toEqual(expectedToolCalls);
    expect(app.upstream.requests[before]!.body).toMatchObject({ tools: weatherTools, tool_choice: 'auto' });

    app.upstream.enqueue(weatherToolScript());
    const runner = client.chat.completions.stream({ model: setup.group, messages: messages('Weather in Paris?'), tools: weatherTools });
    const argumentsDone: { name: string; arguments: string }[] = [];
    runner.on('tool_calls.function.arguments.done', (event) => argumentsDone.push({ name: event.name, arguments: event.arguments }));
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    expect(final.choices[0]!.message.tool_calls).toEqual(expectedToolCalls);
    expect(argumentsDone).toEqual([{ name: 'get_weather', arguments: '{"city":"Paris"}' }]);

    // Raw streaming: the deltas carry the call in pieces.
    app.upstream.enqueue(weatherToolScript());
    const raw = await client.chat.completions.create({ model: setup.group, messages: messages('Weather in Paris?'), tools: weatherTools, stream: true });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of raw) chunks.push(chunk);
    const deltas = chunks.flatMap((chunk) => chunk.choices[0]?.delta?.tool_calls ?? []);
    expect(deltas[0]).toMatchObject({ index: 0, id: 'call_weather_1', type: 'function', function: { name: 'get_weather' } });
    expect(deltas.map((delta) => delta.function?.arguments ?? '').join('')).toBe('{"city":"Paris"}');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });
});

describe('errors reach the SDK as its typed errors', () => {
  it('a bad key is an AuthenticationError (401)', async () => {
    for (const key of [`sk-${'x'.repeat(40)}`, 'not-a-key-at-all-0123456789']) {
      const client = clientFor(key);
      const listed = await rejectionOf(client.models.list());
      expect(listed).toBeInstanceOf(OpenAI.AuthenticationError);
      expect(listed.status).toBe(401);
      expect(listed.type).toBe('authentication_error');
      const created = await rejectionOf(client.chat.completions.create({ model: 'anything', messages: messages() }));
      expect(created).toBeInstanceOf(OpenAI.AuthenticationError);
      expect(created).toMatchObject({ status: 401, code: 'invalid_api_key' });
    }
  });

  it('a team out of credits gets an APIError with status 402 and the contract code and type, and nothing reaches the upstream', async () => {
    const setup = await setupTeam(app, { credits: 0 });
    const client = clientFor(setup.key);
    const before = app.upstream.requests.length;
    for (const stream of [false, true]) {
      const error = await rejectionOf(client.chat.completions.create({ model: setup.group, messages: messages(), stream }));
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect(error).toMatchObject({ status: 402, code: 'insufficient_credits', type: 'billing_error' });
      expect(typeof error.message).toBe('string');
    }
    expect(app.upstream.requests).toHaveLength(before);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 0, held: 0 });
  });

  it('a model the team may not use is a PermissionDeniedError (403)', async () => {
    const setup = await setupTeam(app, { models: ['sim-small'], credits: 5 });
    const client = clientFor(setup.key);
    const before = app.upstream.requests.length;
    for (const stream of [false, true]) {
      const error = await rejectionOf(client.chat.completions.create({ model: 'sim-large', messages: messages(), stream }));
      expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
      expect(error).toMatchObject({ status: 403, code: 'model_not_allowed', type: 'permission_error', param: 'model' });
    }
    expect(app.upstream.requests).toHaveLength(before);
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0 });
  });

  it('an upstream 500 is an InternalServerError with status 502, and nothing is charged', async () => {
    const setup = await setupTeam(app, { credits: 5 });
    const client = clientFor(setup.key);
    for (const stream of [false, true]) {
      app.upstream.enqueue({ status: 500, errorMessage: 'secret upstream detail' });
      const error = await rejectionOf(client.chat.completions.create({ model: setup.group, messages: messages(), stream }));
      expect(error).toBeInstanceOf(OpenAI.InternalServerError);
      expect(error).toMatchObject({ status: 502, code: 'upstream_error', type: 'upstream_error' });
      expect(error.message).not.toContain('secret upstream detail');
    }
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 5, held: 0, credits_used: 0 });
    const usage = await app.request('GET', `/api/teams/${setup.teamId}/usage`, { token: setup.key });
    expect(usage.body.totals).toMatchObject({ jobs: 2, credits_charged: 0 });
  });
});

describe('abort', () => {
  it('aborting a streaming create mid-stream closes the upstream request at once; the job ends cancelled, charged for what was delivered', async () => {
    const setup = await setupTeam(app, { credits: 10 });
    const before = app.upstream.requests.length;
    app.upstream.enqueue(script(['Slow ', 'words ', 'one ', 'at ', 'a ', 'time ', 'until ', 'the ', 'very ', 'end.'], { prompt_tokens: 6, completion_tokens: 10 }, 300));
    const controller = new AbortController();
    const { data: stream, response } = await clientFor(setup.key)
      .chat.completions.create({ model: setup.group, messages: messages(), stream: true }, { signal: controller.signal })
      .withResponse();
    const jobId = response.headers.get('x-job-id');
    expect(jobId).toMatch(/^job_[a-z0-9]{21}$/);

    const received: string[] = [];
    let aborted = false;
    const caught = await (async () => {
      for await (const chunk of stream) {
        const content = chunk.choices[0]?.delta?.content;
        if (content) received.push(content);
        if (received.length === 2 && !aborted) {
          aborted = true;
          controller.abort();
        }
      }
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    // The SDK ends the iteration quietly or with its abort error; either way nothing after the abort.
    if (caught !== undefined) expect(caught).toBeInstanceOf(OpenAI.APIUserAbortError);
    expect(received).toEqual(['Slow ', 'words ']);

    const upstream = await upstreamRequest(app, before);
    const closed = await app.upstream.waitForClosed(upstream.id, 1_000);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt).toBeUndefined();

    // The client left after reading output: it pays for it (billing follows consumption, not how the client left).
    const job = await waitForJobStatus(app, setup, jobId!, 'cancelled');
    expect(job.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
    expect(job.calls[0]).toMatchObject({ status: 'cancelled', delivered: true });
    expect(job.calls[0].response_content ?? '').not.toContain('end.');
    expect(await balanceOf(app, setup.teamId)).toMatchObject({ balance: 9, held: 0, credits_used: 1 });
  });
});
