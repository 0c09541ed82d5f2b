import { request as httpRequest, type IncomingMessage } from 'node:http';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { SIMULATED_MODELS, startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';

const TAIL = 'This answer comes from the creditgate simulated upstream. No real model was called.';
const WEATHER_TOOL = {
  type: 'function' as const,
  function: { name: 'get_weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } },
};

let upstream: SimulatedUpstream;
let client: OpenAI;

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const contentOf = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

/** The record of the next chat request, once it has arrived. */
async function nextRequest(run: () => Promise<unknown>) {
  const index = upstream.requests.length;
  const result = run();
  const requests = await upstream.waitForRequests(index + 1, 1_000);
  return { result, request: requests[index]! };
}

beforeAll(async () => {
  upstream = await startSimulatedUpstream();
  client = new OpenAI({ baseURL: upstream.baseURL, apiKey: 'x', maxRetries: 0, logLevel: 'off' });
});

afterEach(() => upstream.setResponder(undefined));

afterAll(() => upstream.close());

describe('simulated upstream: default responder', () => {
  it('streams a word-by-word reply with a role chunk first and a usage chunk when asked', async () => {
    const stream = await client.chat.completions.create({
      model: 'sim-small',
      messages: [{ role: 'user', content: 'Hello there' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);

    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(contentOf(chunks)).toBe(`Simulated reply to: "Hello there". ${TAIL}`);
    expect(chunks[1]?.choices[0]?.delta.content).toBe('Simulated ');
    const choiceChunks = chunks.filter((c) => c.choices.length > 0);
    expect(choiceChunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(choiceChunks.every((c) => c.usage === null)).toBe(true);

    const usageChunk = chunks.at(-1)!;
    const words = `Simulated reply to: "Hello there". ${TAIL}`.split(' ').length;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual({ prompt_tokens: 3, completion_tokens: words, total_tokens: 3 + words });
    expect(chunks.every((c) => c.model === 'sim-small' && c.object === 'chat.completion.chunk')).toBe(true);
  });

  it('sends no usage without include_usage', async () => {
    const chunks = await collect(
      await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    );
    expect(contentOf(chunks)).toBe(`Simulated reply to: "hi". ${TAIL}`);
    expect(chunks.every((c) => c.usage === undefined && c.choices.length === 1)).toBe(true);
  });

  it('uses SSE headers and ends with [DONE]', async () => {
    const response = await fetch(`${upstream.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'sim-small', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('cache-control')).toBe('no-cache');
    const events = (await response.text()).split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
  });

  it('answers a non-streaming request with a chat.completion', async () => {
    const completion = await client.chat.completions.create({
      model: 'sim-large',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Tell me a joke' }] },
      ],
    });
    const content = `Simulated reply to: "Tell me a joke". ${TAIL}`;
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe('sim-large');
    expect(completion.choices[0]?.message).toEqual({ role: 'assistant', content, refusal: null });
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    const words = content.split(' ').length;
    expect(completion.usage).toEqual({ prompt_tokens: 6, completion_tokens: words, total_tokens: 6 + words });
  });

  it('cuts the reply at max_tokens and finishes with length', async () => {
    const completion = await client.chat.completions.create({
      model: 'sim-small',
      max_tokens: 3,
      messages: [{ role: 'user', content: 'Write a long essay' }],
    });
    expect(completion.choices[0]?.message.content).toBe('Simulated reply to: ');
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage?.completion_tokens).toBe(3);

    const chunks = await collect(
      await client.chat.completions.create({
        model: 'sim-small',
        max_completion_tokens: 2,
        stream: true,
        messages: [{ role: 'user', content: 'Write a long essay' }],
      }),
    );
    expect(contentOf(chunks)).toBe('Simulated reply ');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length');
  });

  it('streams a weather tool call that reassembles by index', async () => {
    const { result, request } = await nextRequest(() =>
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        tools: [WEATHER_TOOL],
        messages: [{ role: 'user', content: "What's the Weather like?" }],
        stream: true,
      }),
    );
    const chunks = await collect((await result) as AsyncIterable<ChatCompletionChunk>);
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);

    expect(deltas.length).toBeGreaterThanOrEqual(2);
    expect(deltas.every((d) => d.index === 0)).toBe(true);
    expect(deltas[0]).toMatchObject({ id: `call_sim_${request.id}`, type: 'function', function: { name: 'get_weather' } });
    expect(deltas.map((d) => d.function?.arguments ?? '').join('')).toBe('{"location":"Paris"}');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('returns the tool call in a non-streaming response with null content', async () => {
    const completion = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      tools: [WEATHER_TOOL],
      messages: [{ role: 'user', content: 'weather in Paris please' }],
    });
    const message = completion.choices[0]?.message;
    expect(message?.content).toBeNull();
    expect(message?.tool_calls).toEqual([
      { id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } },
    ]);
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
    expect(completion.usage?.completion_tokens).toBe(10);
  });

  it('honours firstTokenDelayMs', async () => {
    const slow = await startSimulatedUpstream({ firstTokenDelayMs: 40 });
    try {
      const slowClient = new OpenAI({ baseURL: slow.baseURL, apiKey: 'x', maxRetries: 0 });
      const startedAt = Date.now();
      const stream = await slowClient.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true });
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) break;
      }
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(35);
    } finally {
      await slow.close();
    }
  });
});

describe('simulated upstream: scripts', () => {
  it('reassembles scripted parallel tool calls in a non-streaming response', async () => {
    upstream.enqueue({
      steps: [
        { type: 'tool_call', index: 1, id: 'call_b', name: 'second', arguments: '{}' },
        { type: 'tool_call', index: 0, id: 'call_a', name: 'first', arguments: '{"a":' },
        { type: 'tool_call', index: 0, arguments: '1}' },
      ],
      usage: { prompt_tokens: 7, completion_tokens: 11 },
      model: 'renamed-model',
    });
    const completion = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'go' }] });
    expect(completion.model).toBe('renamed-model');
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
    expect(completion.choices[0]?.message.tool_calls).toEqual([
      { id: 'call_a', type: 'function', function: { name: 'first', arguments: '{"a":1}' } },
      { id: 'call_b', type: 'function', function: { name: 'second', arguments: '{}' } },
    ]);
    expect(completion.usage).toEqual({ prompt_tokens: 7, completion_tokens: 11, total_tokens: 18 });
  });

  it('surfaces a scripted status 500 as an APIError before any stream byte', async () => {
    upstream.enqueue({ status: 500, errorMessage: 'upstream exploded' });
    const error = await client.chat.completions
      .create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
    expect((error as Error).message).toContain('upstream exploded');
  });

  it('surfaces an in-band error event as an APIError and sends no [DONE]', async () => {
    upstream.enqueue({ steps: [{ type: 'content', text: 'Hel' }, { type: 'error', message: 'overloaded', code: 'overloaded' }] });
    const seen: string[] = [];
    const stream = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const error = await (async () => {
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as Error).message).toContain('overloaded');
    expect(seen.join('')).toBe('Hel');
  });

  it('makes the openai stream throw on a malformed raw line', async () => {
    upstream.enqueue({ steps: [{ type: 'content', text: 'ok' }, { type: 'raw', line: 'data: {oops' }] });
    const stream = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true });
    await expect(collect(stream)).rejects.toThrow(SyntaxError);
  });

  it('resets the connection on destroy mid-stream', async () => {
    upstream.enqueue({ steps: [{ type: 'content', text: 'partial ' }, { type: 'destroy', delayMs: 10 }] });
    const seen: string[] = [];
    const { result, request } = await nextRequest(async () => {
      const stream = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true });
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
    });
    await expect(result).rejects.toThrow();
    expect(seen.join('')).toBe('partial ');
    const closed = await upstream.waitForClosed(request.id, 1_000);
    expect(closed.abortedByClient).toBe(false);
    expect(closed.finishedAt).toBeUndefined();
  });

  it('keeps a hanging stream open until the client aborts, then records the abort', async () => {
    upstream.enqueue({ steps: [{ type: 'content', text: 'thinking' }, { type: 'hang' }] });
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true },
      { signal: controller.signal },
    );
    const request = upstream.requests.at(-1)!;
    expect(upstream.openStreams()).toBe(1);

    let abortedAt = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content === 'thinking') {
        abortedAt = Date.now();
        controller.abort();
      }
    }
    const closed = await upstream.waitForClosed(request.id, 1_000);
    expect(closed.abortedByClient).toBe(true);
    expect(closed.finishedAt).toBeUndefined();
    expect(closed.closedAt! - abortedAt).toBeLessThan(200);
    expect(upstream.openStreams()).toBe(0);
  });

  it('waits for the socket to drain when the client reads slowly', async () => {
    // 16 MB is more than loopback socket buffers hold, so the server must block on 'drain' before reaching destroy.
    const bigChunks = Array.from({ length: 256 }, () => ({ type: 'content' as const, text: 'x'.repeat(65_536) }));
    upstream.enqueue({ steps: [...bigChunks, { type: 'destroy' }] });
    const index = upstream.requests.length;
    const req = httpRequest(`${upstream.baseURL}/chat/completions`, { method: 'POST' });
    const response = new Promise<IncomingMessage>((resolve) => req.on('response', resolve));
    req.end(JSON.stringify({ model: 'sim-small', stream: true, messages: [] }));
    const paused = await response;
    paused.pause();

    const request = (await upstream.waitForRequests(index + 1, 1_000))[index]!;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(request.closedAt).toBeUndefined();
    expect(upstream.openStreams()).toBe(1);

    paused.destroy();
    expect((await upstream.waitForClosed(request.id, 1_000)).abortedByClient).toBe(true);
  });

  it('cancels a scripted header delay when the client goes away', async () => {
    const pendingTimers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
    const timersBefore = pendingTimers();
    upstream.enqueue({ headersDelayMs: 5_000 });
    const index = upstream.requests.length;
    // A bare node:http client, so no client-side timers muddy the timer count.
    const req = httpRequest(`${upstream.baseURL}/chat/completions`, { method: 'POST', agent: false });
    req.on('error', () => {});
    req.end(JSON.stringify({ model: 'sim-small', messages: [] }));
    const request = (await upstream.waitForRequests(index + 1, 1_000))[index]!;

    req.destroy();
    const closed = await upstream.waitForClosed(request.id, 1_000);
    expect(closed.abortedByClient).toBe(true);
    expect(pendingTimers()).toBeLessThanOrEqual(timersBefore);
  });

  it('serves enqueued scripts in order, then the responder, then the default responder', async () => {
    upstream.enqueue({ steps: [{ type: 'content', text: 'first' }] }, { steps: [{ type: 'content', text: 'second' }] });
    upstream.setResponder((request) => ({ steps: [{ type: 'content', text: `responder #${request.id}` }] }));
    const ask = async () =>
      (await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'next' }] })).choices[0]?.message
        .content;

    expect(await ask()).toBe('first');
    expect(await ask()).toBe('second');
    expect(await ask()).toBe(`responder #${upstream.requests.length}`);
    upstream.setResponder(undefined);
    expect(await ask()).toBe(`Simulated reply to: "next". ${TAIL}`);
  });

  it('records requests in arrival order with path, headers and body', async () => {
    const before = upstream.requests.length;
    await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'record me' }] });
    const requests = await upstream.waitForRequests(before + 1, 1_000);
    const request = requests[before]!;
    expect(request.id).toBe(before + 1);
    expect(request.path).toBe('/v1/chat/completions');
    expect(request.headers.authorization).toBe('Bearer x');
    expect(request.body.messages).toEqual([{ role: 'user', content: 'record me' }]);
    expect(request.finishedAt).toBeGreaterThanOrEqual(request.startedAt);
    expect(upstream.requests.map((r) => r.id)).toEqual(upstream.requests.map((_, i) => i + 1));
  });
});

describe('simulated upstream: other endpoints', () => {
  it('lists the simulated models', async () => {
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models.map((m) => m.id)).toEqual(SIMULATED_MODELS);
    expect(models[0]).toMatchObject({ object: 'model', owned_by: 'creditgate-sim' });
  });

  it('rejects an unparseable body with 400 and an unknown path with 404', async () => {
    const bad = await fetch(`${upstream.baseURL}/chat/completions`, { method: 'POST', body: '{not json' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null },
    });

    const missing = await fetch(`${upstream.url}/v1/embeddings`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('enforces the api key when one is configured', async () => {
    const secured = await startSimulatedUpstream({ apiKey: 'secret' });
    try {
      const wrong = new OpenAI({ baseURL: secured.baseURL, apiKey: 'wrong', maxRetries: 0 });
      await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      await expect(
        wrong.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }] }),
      ).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });

      const right = new OpenAI({ baseURL: secured.baseURL, apiKey: 'secret', maxRetries: 0 });
      const completion = await right.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }] });
      expect(completion.choices[0]?.finish_reason).toBe('stop');
      expect(secured.requests).toHaveLength(1);
    } finally {
      await secured.close();
    }
  });

  it('closes promptly while a stream hangs', async () => {
    const hanging = await startSimulatedUpstream({ responder: () => ({ steps: [{ type: 'hang' }] }) });
    const hangingClient = new OpenAI({ baseURL: hanging.baseURL, apiKey: 'x', maxRetries: 0 });
    const stream = await hangingClient.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const consuming = collect(stream).catch((e: unknown) => e);
    expect(hanging.openStreams()).toBe(1);

    const startedAt = Date.now();
    await hanging.close();
    expect(Date.now() - startedAt).toBeLessThan(500);
    expect(await consuming).toBeInstanceOf(Error);
    expect(hanging.requests[0]?.abortedByClient).toBe(false);
    expect(hanging.requests[0]?.closedAt).toBeDefined();
  });
});
