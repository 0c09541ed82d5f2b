import { request as httpRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedRequest, UpstreamScript } from '../../src/upstream/simulated-server.js';
import { expectErrorBody } from '../helpers/api.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent, ledgerSum } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';
import { queueItem, submitQueued, submitQueuedOk, untilQueueItemEnded } from '../helpers/queue.js';
import { poll } from '../helpers/wait.js';

/**
 * The queue's memory is bounded: a team may have only QUEUE_MAX_OPEN_PER_TEAM calls waiting or running (429
 * queue_full beyond), each queued call keeps at most QUEUE_ITEM_BUFFER_BYTES of replay frames and all of them
 * together at most QUEUE_BUFFER_BYTES, freed QUEUE_LINGER_MS after each call ends; a late reader of a call that
 * outgrew them gets it replayed from its record, and a reader that falls QUEUE_ITEM_BUFFER_BYTES behind is ended
 * with a slow_reader error event (and may attach again).
 */

const ITEM_BYTES = 16 * 1024;
const TOTAL_BYTES = 64 * 1024;
const LINGER_MS = 500;

let capped: TestApp;
let small: TestApp;
beforeAll(async () => {
  [capped, small] = await Promise.all([
    createTestApp({ QUEUE_MAX_OPEN_PER_TEAM: '3' }),
    createTestApp({ QUEUE_ITEM_BUFFER_BYTES: String(ITEM_BYTES), QUEUE_BUFFER_BYTES: String(TOTAL_BYTES), QUEUE_LINGER_MS: String(LINGER_MS) }),
  ]);
});
afterAll(async () => {
  await Promise.all([capped?.close(), small?.close()]);
});

// ---------------------------------------------------------------------------------------------------------------
// helpers

interface QueueEvent {
  event: string;
  data: any;
}

/** The events of a queue stream read to its end (`:` comments carry none). */
function parseEvents(text: string): QueueEvent[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.trim() !== '' && !frame.split('\n').every((line) => line.startsWith(':')))
    .map((frame) => {
      const lines = frame.split('\n');
      const event = lines.find((line) => line.startsWith('event:'))?.slice(6).trim() ?? 'message';
      const data = lines
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      return { event, data: JSON.parse(data) };
    });
}

const contentOf = (events: QueueEvent[]) =>
  events
    .filter((event) => event.event === 'chunk')
    .map((event) => event.data.delta as string)
    .join('');

/** Attaches and reads to the end: the whole call, replayed from wherever it is. */
async function attachAndRead(target: TestApp, team: TeamSetup, queueId: string): Promise<QueueEvent[]> {
  const raw = await postRaw(target, '/api/llm/queue/stream', team.key, { queueId });
  expect(raw.status, raw.text.slice(0, 500)).toBe(200);
  expect(raw.contentType).toMatch(/^text\/event-stream/);
  return parseEvents(raw.text);
}

/** A reply of `parts` pieces of `size` characters, each piece different (so a gap or a repeat shows). */
function reply(label: string, parts: number, size: number): string[] {
  return Array.from({ length: parts }, (_, i) => {
    const head = `[${label}:${i}]`;
    return head + String.fromCharCode(97 + (i % 26)).repeat(size - head.length);
  });
}

const script = (parts: string[], options: { firstDelayMs?: number; delayMs?: number } = {}): UpstreamScript => ({
  steps: parts.map((text, i) => ({ type: 'content' as const, text, delayMs: i === 0 ? 0 : i === 1 ? (options.firstDelayMs ?? options.delayMs ?? 0) : (options.delayMs ?? 0) })),
  usage: { prompt_tokens: 5, completion_tokens: parts.length },
});

/** Samples `deps.queue.keptBytes` every millisecond until stopped; returns every sample. */
function sampleKeptBytes(target: TestApp): { stop(): number[]; samples: number[] } {
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(target.deps.queue.keptBytes), 1);
  return {
    samples,
    stop() {
      clearInterval(timer);
      samples.push(target.deps.queue.keptBytes);
      return samples;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

describe('a cap on queued calls per team', () => {
  it('QUEUE_MAX_OPEN_PER_TEAM 3: the 4th submit is 429 queue_full with Retry-After, creates no job and holds nothing; other teams are unaffected; a slot frees when one ends', async () => {
    const team = await setupTeam(capped, { credits: 10 });
    const neighbour = await setupTeam(capped, { credits: 10 });
    capped.upstream.setResponder((request: RecordedRequest) =>
      request.body?.messages?.at(-1)?.content === 'slow' ? { steps: [{ type: 'content', text: 'x' }, { type: 'hang' }], usage: 'none' } : {},
    );
    try {
      const openJob = await capped.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'own' } });
      expect(openJob.status).toBe(201);
      const upstreamBefore = capped.upstream.requests.length;
      const ids = [await submitQueuedOk(capped, team, 'slow'), await submitQueuedOk(capped, team, 'slow'), await submitQueuedOk(capped, team, 'slow')];
      await capped.upstream.waitForRequests(upstreamBefore + 3);

      const jobs = async () => (await query(capped, 'SELECT count(*)::int AS n FROM jobs WHERE team_id = $1', [team.teamId]))[0].n as number;
      const items = async () => (await query(capped, 'SELECT count(*)::int AS n FROM queue_requests WHERE team_id = $1', [team.teamId]))[0].n as number;
      const before = { jobs: await jobs(), items: await items(), ledger: await ledgerSum(capped, team.teamId, { entries: true }) };
      expect(before).toMatchObject({ jobs: 4, items: 3, ledger: { held: 4 } });

      for (const extra of [{}, { job_id: openJob.body.job_id }]) {
        const refused = await submitQueued(capped, team, 'slow', extra);
        const error = expectErrorBody(refused, 429, 'queue_full');
        expect(error.type).toBe('rate_limit_error');
        expect(error.message).toMatch(/3 queued calls/);
        expect(refused.headers.get('retry-after')).toBe('1');
      }
      expect({ jobs: await jobs(), items: await items(), ledger: await ledgerSum(capped, team.teamId, { entries: true }) }).toEqual(before);
      expect(capped.upstream.requests.length).toBe(upstreamBefore + 3);

      // The cap is per team.
      const neighbours = await submitQueuedOk(capped, neighbour, 'quick');
      expect((await untilQueueItemEnded(capped, neighbour, neighbours)).status).toBe('completed');

      // One ends (cancelled): its slot is free at once.
      const cancelled = await capped.request('POST', '/api/llm/queue/cancel', { token: team.key, body: { queueId: ids[0] } });
      expect(cancelled.body.data.status).toBe('cancelled');
      const next = await submitQueuedOk(capped, team, 'quick');
      expect((await untilQueueItemEnded(capped, team, next)).status).toBe('completed');
      // Two still open: one more fits, the next does not.
      ids.push(await submitQueuedOk(capped, team, 'slow'));
      expectErrorBody(await submitQueued(capped, team, 'slow'), 429, 'queue_full');

      for (const id of ids) await capped.request('POST', '/api/llm/queue/cancel', { token: team.key, body: { queueId: id } });
      for (const id of ids) await untilQueueItemEnded(capped, team, id);
      await poll(async () => ((await query(capped, `SELECT 1 FROM llm_calls WHERE team_id = $1 AND status = 'in_progress'`, [team.teamId])).length === 0 ? true : undefined), 5_000, 'the cancelled calls to be recorded');
      await expectLedgerConsistent(capped, team.teamId, { jobs: true });
    } finally {
      capped.upstream.setResponder(undefined);
    }
  });
});

describe('replay frames within a byte budget', () => {
  /** Replies by the prompt: `<label>` names a reply registered here. */
  const replies = new Map<string, { parts: string[]; options?: { firstDelayMs?: number; delayMs?: number } }>();
  beforeAll(() => {
    small.upstream.setResponder((request: RecordedRequest) => {
      const wanted = replies.get(request.body?.messages?.at(-1)?.content);
      return wanted ? script(wanted.parts, wanted.options) : {};
    });
  });
  afterAll(() => small.upstream.setResponder(undefined));

  function register(label: string, parts: string[], options?: { firstDelayMs?: number; delayMs?: number }) {
    replies.set(label, { parts, ...(options && { options }) });
    return { label, content: parts.join('') };
  }

  it('one call keeps at most QUEUE_ITEM_BUFFER_BYTES: a small reply is kept for QUEUE_LINGER_MS after it ends, a large one is dropped as it outgrows it', async () => {
    const team = await setupTeam(small, { credits: 100 });
    expect(small.deps.queue.keptBytes).toBe(0);

    const fits = register('fits', reply('fits', 3, 1000));
    const sampler = sampleKeptBytes(small);
    const fitsId = await submitQueuedOk(small, team, fits.label);
    expect((await untilQueueItemEnded(small, team, fitsId)).status).toBe('completed');
    const kept = small.deps.queue.keptBytes;
    expect(kept, 'a finished call that fits is kept for late readers').toBeGreaterThan(2 * fits.content.length);
    expect(kept).toBeLessThanOrEqual(ITEM_BYTES);
    // A reader attaching just after it ended gets it from memory, whole.
    const fromMemory = await attachAndRead(small, team, fitsId);
    expect(contentOf(fromMemory)).toBe(fits.content);
    expect(fromMemory.at(-1)!.event).toBe('done');
    await poll(async () => (small.deps.queue.keptBytes === 0 ? true : undefined), LINGER_MS + 2_000, 'the frames to be freed after QUEUE_LINGER_MS', 10);

    const large = register('large', reply('large', 40, 1000));
    const largeId = await submitQueuedOk(small, team, large.label);
    expect((await untilQueueItemEnded(small, team, largeId)).status).toBe('completed');
    expect(small.deps.queue.keptBytes, 'a call that outgrew its budget keeps nothing, even while it lingers').toBe(0);
    const samples = sampler.stop();
    expect(Math.max(...samples)).toBeLessThanOrEqual(ITEM_BYTES);
    // Its late reader gets it replayed from its record, whole.
    const replayed = await attachAndRead(small, team, largeId);
    expect(contentOf(replayed)).toBe(large.content);
    expect(replayed.map((event) => event.event)).toEqual(['start', 'chunk', 'chunk', 'done']);
  });

  it('a flood of queued calls with large replies and nobody attached stays within QUEUE_BUFFER_BYTES, is freed after QUEUE_LINGER_MS, and every late reader gets its whole call', async () => {
    const teams = await Promise.all(Array.from({ length: 3 }, () => setupTeam(small, { credits: 200 })));
    const calls = [
      ...Array.from({ length: 10 }, (_, i) => register(`flood-large-${i}`, reply(`L${i}`, 30, 1000))),
      ...Array.from({ length: 24 }, (_, i) => register(`flood-medium-${i}`, reply(`M${i}`, 3, 1000))),
      // Still running when its late reader attaches, after it outgrew its budget.
      register('flood-slow', reply('S', 30, 1000), { delayMs: 40 }),
    ];
    const sampler = sampleKeptBytes(small);
    const submitted = await Promise.all(calls.map((call, i) => submitQueuedOk(small, teams[i % teams.length]!, call.label).then((id) => ({ ...call, id, team: teams[i % teams.length]! }))));

    // The slow call outgrows its 16 KB after about 9 of its 40 ms pieces: attach 500 ms into it, while it still runs.
    const slow = submitted.at(-1)!;
    const upstreamRequest = await poll(
      async () => small.upstream.requests.find((request) => request.body?.messages?.at(-1)?.content === slow.label),
      5_000,
      'the slow call to reach the upstream',
      10,
    );
    await poll(async () => (Date.now() - upstreamRequest.startedAt >= 500 ? true : undefined), 5_000, 'the slow call to outgrow its budget', 10);
    expect((await queueItem(small, slow.team, slow.id)).status).toBe('processing');
    const whileRunning = attachAndRead(small, slow.team, slow.id);

    for (const call of submitted) expect((await untilQueueItemEnded(small, call.team, call.id)).status, call.label).toBe('completed');
    await poll(async () => (small.deps.queue.keptBytes === 0 ? true : undefined), LINGER_MS + 3_000, 'every frame to be freed after QUEUE_LINGER_MS', 10);
    const samples = sampler.stop();
    const most = Math.max(...samples);
    expect(most, 'replay frames kept at once, all calls together').toBeLessThanOrEqual(TOTAL_BYTES);
    expect(most, 'the shared budget was used by several calls at once').toBeGreaterThan(ITEM_BYTES);
    expect(samples.at(-1)).toBe(0);

    const late = await whileRunning;
    expect(contentOf(late), 'the reader that attached mid-call got all of it').toBe(slow.content);
    expect(late.at(-1)!.event).toBe('done');
    // Every call, read now (nothing is in memory any more), is replayed whole from its record.
    for (const call of submitted) {
      const events = await attachAndRead(small, call.team, call.id);
      expect(contentOf(events), call.label).toBe(call.content);
      expect(events.at(-1)!.event, call.label).toBe('done');
    }
    expect(small.deps.queue.keptBytes).toBe(0);
    for (const team of teams) await expectLedgerConsistent(small, team.teamId, { jobs: true });
  });

  it('a reader that stops reading is ended with a slow_reader error event while one that keeps reading gets the whole call; the slow one can attach again', async () => {
    const team = await setupTeam(small, { credits: 10 });
    // A first small piece, a pause in which the readers attach, then far more than the sockets between the call and a
    // reader that stopped can hold (about 4 MB here), a piece every millisecond.
    const huge = register('huge', [`begin `, ...reply('H', 3500, 2000)], { firstDelayMs: 1_000, delayMs: 1 });
    const queueId = await submitQueuedOk(small, team, huge.label);

    const reading = attachAndRead(small, team, queueId);
    const { response, text, ended } = await attachRaw(small, team, queueId);
    expect(response.statusCode).toBe(200);
    // Read up to the first chunk, then stop reading.
    await poll(async () => (text().includes('event: chunk') ? true : undefined), 5_000, 'the first chunk', 5);
    response.pause();
    // The call runs on without waiting for its readers.
    expect((await untilQueueItemEnded(small, team, queueId, 40_000)).status).toBe('completed');
    response.resume();
    await ended;

    const events = parseEvents(text());
    expect(events[0]!.event).toBe('start');
    const last = events.at(-1)!;
    expect(last.event, JSON.stringify(last.data).slice(0, 300)).toBe('error');
    expect(last.data.error.code).toBe('slow_reader');
    expect(events.some((event) => event.event === 'done'), 'the slow reader did not get the end').toBe(false);
    const partial = contentOf(events);
    expect(partial.length).toBeLessThan(huge.content.length);
    expect(huge.content.startsWith(partial), 'what it got is the beginning of the call, without gaps').toBe(true);

    // The reader that kept reading, attached to the same call, got all of it.
    const whole = await reading;
    expect(contentOf(whole).length).toBe(huge.content.length);
    expect(contentOf(whole) === huge.content).toBe(true);
    expect(whole.at(-1)!.event).toBe('done');

    // Attaching again: the whole call, replayed from its record.
    const again = await attachAndRead(small, team, queueId);
    expect(contentOf(again) === huge.content, 'the second attach gets the whole call').toBe(true);
    expect(again.at(-1)!.event).toBe('done');
  }, 60_000);
});

/** A queue reader through node:http, whose reading the test pauses and resumes at the socket. */
async function attachRaw(target: TestApp, team: TeamSetup, queueId: string): Promise<{ response: IncomingMessage; text(): string; ended: Promise<void> }> {
  const url = new URL(`${target.url}/api/llm/queue/stream`);
  const payload = JSON.stringify({ queueId });
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      resolve,
    );
    req.on('error', reject);
    req.end(payload);
  });
  const chunks: string[] = [];
  response.setEncoding('utf8');
  response.on('data', (chunk: string) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    response.on('end', resolve);
    response.on('error', reject);
  });
  return { response, text: () => chunks.join(''), ended };
}
