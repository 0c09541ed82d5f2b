import { sleep } from '../../helpers/wait.js';
import { MASTER_KEY } from '../support.js';
import type { ServerProcess } from '../support.js';
import type { Cluster } from './cluster.js';
import { exchange, type Exchange, type LeavePoint, type ReadingStyle } from './http-client.js';
import { callObservation, type Observations, type OperationObservation } from './observations.js';
import type { Random } from './random.js';
import type { SimTeam } from './teams.js';
import { drawCallPlan, type CallPlan, type UpstreamKind, type UpstreamPlans } from './upstream-plans.js';

/**
 * The client behaviours of the simulation. Each operation draws everything it will do from its own generator
 * before doing it (team, endpoint, body, upstream plan, when it leaves), so an operation's plan depends only on the
 * run's seed and its index; what the server answers and when is up to the processes.
 */

export interface SimContext {
  cluster: Cluster;
  teams: SimTeam[];
  plans: UpstreamPlans;
  observations: Observations;
  /** The instances' JOB_TIMEOUT_SECONDS, in ms. */
  jobTimeoutMs: number;
  /** How long a client waits for an answer before it leaves. */
  patienceMs: number;
}

type Behaviour = (sim: SimContext, rng: Random, op: number) => Promise<void>;

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

interface ClientStyle {
  leave?: LeavePoint | undefined;
  reading?: ReadingStyle | undefined;
}

/** How a client treats one answer: stays to the end, leaves at some point, or reads slowly. */
function drawClientStyle(rng: Random, streamed: boolean): ClientStyle {
  if (!streamed) {
    const style = rng.weighted({ stay: 80, 'after-send': 12, 'during-body': 3, 'mid-call': 5 });
    if (style === 'after-send') return { leave: { at: 'after-send', delayMs: rng.int(0, 30) } };
    if (style === 'during-body') return { leave: { at: 'during-body', delayMs: rng.int(0, 30) } };
    if (style === 'mid-call') return { leave: { at: 'after-send', delayMs: rng.int(50, 1500) } };
    return {};
  }
  const style = rng.weighted({ stay: 50, 'after-send': 10, 'during-body': 3, 'first-byte': 9, 'after-content': 9, 'before-done': 9, slow: 6, stall: 2 });
  switch (style) {
    case 'after-send':
      return { leave: { at: 'after-send', delayMs: rng.int(0, 30) } };
    case 'during-body':
      return { leave: { at: 'during-body', delayMs: rng.int(0, 30) } };
    case 'first-byte':
      return { leave: { at: 'first-byte' } };
    case 'after-content':
      return { leave: { at: 'after-content', chunks: rng.int(1, 30) } };
    case 'before-done':
      return { leave: { at: 'before-done' } };
    case 'slow':
      return { reading: { readDelayMs: rng.int(5, 40) } };
    case 'stall':
      return { reading: { stallMs: rng.int(1_000, 5_000) } };
    default:
      return {};
  }
}

const WEATHER_TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { location: { type: 'string' } } } },
};

/** The chat part of a request: tagged messages, sometimes a model, a token limit, tools. */
function chatBody(rng: Random, team: SimTeam, plan: CallPlan, requireModel = false): Record<string, unknown> {
  const filler = 'Please answer in detail. '.repeat(rng.int(0, 24));
  const history = rng.chance(0.3)
    ? [
        { role: 'user', content: 'Earlier question.' },
        { role: 'assistant', content: 'Earlier answer.' },
      ]
    : [];
  const body: Record<string, unknown> = { messages: [...history, { role: 'user', content: `[sim:${plan.tag}] ${filler}` }] };
  const model = rng.weighted({ default: requireModel ? 0 : 3, group: 2, single: 1 });
  if (model === 'group') body.model = team.group;
  if (model === 'single') body.model = rng.pick(team.models);
  if (rng.chance(0.5)) body[rng.chance(0.5) ? 'max_tokens' : 'max_completion_tokens'] = rng.pick([16, 40, 100, 400, 2000]);
  if (plan.withTools) body.tools = [WEATHER_TOOL];
  if (rng.chance(0.1)) body.temperature = 0.3;
  return body;
}

interface PlannedCall extends ClientStyle {
  endpoint: string;
  tag: string;
  body: Record<string, unknown>;
  patienceMs?: number;
}

/** Plans one call: the upstream's plan for it (registered) and the client's style. */
function planCall(
  sim: SimContext,
  rng: Random,
  team: SimTeam,
  tag: string,
  endpoint: string,
  streamed: boolean,
  options: { kind?: UpstreamKind; extra?: Record<string, unknown>; requireModel?: boolean; style?: ClientStyle } = {},
): PlannedCall {
  const style = options.style ?? drawClientStyle(rng, streamed);
  const kind = options.kind ?? (style.reading && rng.chance(0.6) ? 'long' : undefined);
  const plan = drawCallPlan(rng, tag, kind);
  sim.plans.register(plan);
  const body = { ...options.extra, ...chatBody(rng, team, plan, options.requireModel) };
  if (streamed && rng.chance(0.3)) body.stream_options = { include_usage: true };
  return { endpoint, tag, body, ...style };
}

async function perform(sim: SimContext, rng: Random, obs: OperationObservation, team: SimTeam, call: PlannedCall): Promise<Exchange> {
  sim.observations.expectTag(obs, call.tag);
  const server = await sim.cluster.pick(rng);
  const result = await exchange({
    baseUrl: server.url,
    path: call.endpoint,
    token: team.key,
    body: call.body,
    leave: call.leave,
    reading: call.reading,
    patienceMs: call.patienceMs ?? sim.patienceMs,
  });
  sim.observations.addCall(obs, callObservation(call.tag, call.endpoint, server.child.pid, result));
  const jobId = result.headers['x-job-id'] ?? result.json?.job_id;
  if (typeof jobId === 'string') sim.observations.setJob(obs, jobId);
  return result;
}

/** Any live instance, not drawn from the operation's generator (retries happen a timing-dependent number of times). */
const anyInstance = (sim: SimContext) => sim.cluster.pick();

async function createJob(sim: SimContext, obs: OperationObservation, team: SimTeam, jobType: string): Promise<string | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = await anyInstance(sim);
    const result = await exchange({ baseUrl: server.url, path: '/api/jobs/create', token: team.key, body: { team_id: team.teamId, job_type: jobType }, patienceMs: 15_000 });
    if (result.status === 201 && typeof result.json?.job_id === 'string') {
      sim.observations.setJob(obs, result.json.job_id);
      return result.json.job_id;
    }
    // A transport failure leaves it unknown whether the job exists: that one is abandoned to the sweeper.
    if (result.status !== 0 && result.status !== 503) {
      obs.notes.push(`create: ${result.status} ${result.json?.error?.code ?? ''}`);
      return undefined;
    }
    await sleep(200);
  }
  obs.notes.push('create: no answer');
  return undefined;
}

/** Completes a job, retried while its calls are still being recorded or the instance is away. */
async function endJob(sim: SimContext, obs: OperationObservation, team: SimTeam, jobId: string, status: 'completed' | 'failed'): Promise<void> {
  for (let attempt = 0; attempt < 60; attempt++) {
    const server = await anyInstance(sim);
    const result = await exchange({ baseUrl: server.url, path: `/api/jobs/${jobId}/complete`, token: team.key, body: { status }, patienceMs: 15_000 });
    const code: string | undefined = result.json?.error?.code;
    if (result.status === 0 || result.status === 503 || (result.status === 409 && code === 'calls_in_progress')) {
      await sleep(100 + attempt * 20);
      continue;
    }
    obs.endings.push({ requested: status, status: result.status, code, creditsCharged: result.json?.costs?.credits_charged, at: result.startedAt, answeredAt: result.endedAt });
    return;
  }
  obs.notes.push(`complete ${status}: no final answer`);
}

async function cancelJob(sim: SimContext, obs: OperationObservation, team: SimTeam, jobId: string): Promise<void> {
  const at = Date.now();
  const server = await anyInstance(sim);
  const result = await exchange({ baseUrl: server.url, path: `/api/jobs/${jobId}/cancel`, token: team.key, body: undefined, patienceMs: 20_000 });
  obs.endings.push({ requested: 'cancel', status: result.status, code: result.json?.error?.code, creditsCharged: result.json?.costs?.credits_charged, at, answeredAt: result.endedAt });
}

const jobGone = (result: Exchange) => result.status === 404 || (result.status === 409 && result.json?.error?.code !== 'calls_in_progress');

// ---------------------------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------------------------

/** POST /api/jobs/create-and-call-stream: one job, one streamed call, settled by the server. */
const oneShotStream: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'create-and-call-stream', team.teamId);
  const call = planCall(sim, rng, team, `o${op}c0`, '/api/jobs/create-and-call-stream', true, {
    extra: { team_id: team.teamId, job_type: 'sim-oneshot-stream' },
  });
  await perform(sim, rng, obs, team, call);
};

/** POST /api/jobs/create-and-call: the same, not streamed. */
const oneShotPlain: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'create-and-call', team.teamId);
  const call = planCall(sim, rng, team, `o${op}c0`, '/api/jobs/create-and-call', false, {
    extra: { team_id: team.teamId, job_type: 'sim-oneshot' },
  });
  await perform(sim, rng, obs, team, call);
};

/** POST /v1/chat/completions with stream: true. */
const openAiStream: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'v1-stream', team.teamId);
  const call = planCall(sim, rng, team, `o${op}c0`, '/v1/chat/completions', true, { extra: { stream: true }, requireModel: true });
  await perform(sim, rng, obs, team, call);
};

/** POST /v1/chat/completions, not streamed. */
const openAiPlain: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'v1', team.teamId);
  const call = planCall(sim, rng, team, `o${op}c0`, '/v1/chat/completions', false, { requireModel: true });
  await perform(sim, rng, obs, team, call);
};

const callEndpoint = (jobId: string, streamed: boolean) => `/api/jobs/${jobId}/llm-call${streamed ? '-stream' : ''}`;

/**
 * A job of several calls: batches of one to four calls (the calls of a batch run concurrently on the job), then
 * completed, completed as failed (after output), cancelled, or abandoned. Sometimes the completion is sent twice,
 * the second time to any instance, or with the other status.
 */
const multiCallJob: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'multi-call', team.teamId);
  const batchSizes = Array.from({ length: rng.int(1, 3) }, () => (rng.chance(0.35) ? rng.int(2, 4) : 1));
  const ending = rng.weighted({ completed: 45, failed: 25, cancel: 12, abandon: 10, 'completed-twice': 5, 'both-statuses': 3 });
  const jobId = await createJob(sim, obs, team, 'sim-multi');
  if (!jobId) return;
  let index = 0;
  for (const size of batchSizes) {
    const calls = Array.from({ length: size }, () => {
      const streamed = rng.chance(0.6);
      return planCall(sim, rng, team, `o${op}c${index++}`, callEndpoint(jobId, streamed), streamed);
    });
    const results = await Promise.all(calls.map((call) => perform(sim, rng, obs, team, call)));
    if (results.some(jobGone)) break;
  }
  switch (ending) {
    case 'abandon':
      obs.abandoned = true;
      return;
    case 'cancel':
      return cancelJob(sim, obs, team, jobId);
    case 'completed-twice':
      await endJob(sim, obs, team, jobId, 'completed');
      return endJob(sim, obs, team, jobId, 'completed');
    case 'both-statuses':
      await endJob(sim, obs, team, jobId, 'failed');
      return endJob(sim, obs, team, jobId, 'completed');
    default:
      return endJob(sim, obs, team, jobId, ending as 'completed' | 'failed');
  }
};

/** A job whose calls are running (slow or long answers) when the client cancels it, on any instance. */
const cancelDuringCalls: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'cancel-during-calls', team.teamId);
  const count = rng.int(1, 3);
  const delayMs = rng.int(0, 800);
  const thenComplete = rng.chance(0.3);
  const jobId = await createJob(sim, obs, team, 'sim-cancel');
  if (!jobId) return;
  const calls = Array.from({ length: count }, (_, i) => {
    const streamed = rng.chance(0.7);
    const kind = rng.pick<UpstreamKind>(['slow', 'long', 'hang-mid', 'short', 'slow']);
    return planCall(sim, rng, team, `o${op}c${i}`, callEndpoint(jobId, streamed), streamed, { kind, style: {} });
  });
  const running = calls.map((call) => perform(sim, rng, obs, team, call));
  await sleep(delayMs);
  await cancelJob(sim, obs, team, jobId);
  await Promise.all(running);
  if (thenComplete) await endJob(sim, obs, team, jobId, 'completed');
};

/** A job created (maybe called) and never ended: the sweeper must end it. */
const abandonJob: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'abandon', team.teamId);
  const count = rng.int(0, 2);
  const jobId = await createJob(sim, obs, team, 'sim-abandon');
  obs.abandoned = true;
  if (!jobId) return;
  for (let i = 0; i < count; i++) {
    const streamed = rng.chance(0.5);
    await perform(sim, rng, obs, team, planCall(sim, rng, team, `o${op}c${i}`, callEndpoint(jobId, streamed), streamed));
  }
};

/** A job that gets output, then stays idle past the job timeout, then tries another call and to complete. */
const outliveTimeout: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'outlive-timeout', team.teamId);
  const idleMs = sim.jobTimeoutMs + rng.int(1_500, 4_000);
  const streamed = rng.chance(0.5);
  const jobId = await createJob(sim, obs, team, 'sim-outlive');
  if (!jobId) return;
  await perform(sim, rng, obs, team, planCall(sim, rng, team, `o${op}c0`, callEndpoint(jobId, streamed), streamed, { kind: 'short', style: {} }));
  await sleep(idleMs);
  await perform(sim, rng, obs, team, planCall(sim, rng, team, `o${op}c1`, callEndpoint(jobId, false), false, { kind: 'short', style: {} }));
  await endJob(sim, obs, team, jobId, 'completed');
};

/** A stream longer than the job timeout, read to the end: one-shot, or a call of a job completed afterwards. */
const marathonStream: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const oneShot = rng.chance(0.5);
  const obs = sim.observations.begin(op, oneShot ? 'marathon-oneshot' : 'marathon-job', team.teamId);
  const patienceMs = sim.jobTimeoutMs + 30_000;
  if (oneShot) {
    const call = planCall(sim, rng, team, `o${op}c0`, '/api/jobs/create-and-call-stream', true, {
      kind: 'marathon',
      style: {},
      extra: { team_id: team.teamId, job_type: 'sim-marathon' },
    });
    await perform(sim, rng, obs, team, { ...call, patienceMs });
    return;
  }
  const jobId = await createJob(sim, obs, team, 'sim-marathon-job');
  if (!jobId) return;
  const call = planCall(sim, rng, team, `o${op}c0`, callEndpoint(jobId, true), true, { kind: 'marathon', style: {} });
  await perform(sim, rng, obs, team, { ...call, patienceMs });
  await endJob(sim, obs, team, jobId, 'completed');
};

/**
 * The queue: a call submitted to run server-side, then attached to (the client may leave the stream: the call goes
 * on, so that is not a client leaving the call), cancelled after a moment, or polled until it ends.
 */
const queuedCall: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const obs = sim.observations.begin(op, 'queue', team.teamId);
  const then = rng.weighted({ attach: 4, cancel: 3, poll: 3 });
  const cancelAfterMs = rng.int(0, 600);
  const attachStyle = drawClientStyle(rng, true);
  const call = planCall(sim, rng, team, `o${op}c0`, '/api/llm/complete', false, { style: {}, requireModel: true, extra: { stream: true } });
  sim.observations.expectTag(obs, call.tag);
  const submitted = await exchange({ baseUrl: (await sim.cluster.pick(rng)).url, path: call.endpoint, token: team.key, body: call.body, patienceMs: 15_000 });
  const queueId: unknown = submitted.json?.data?.queueId;
  if (submitted.status !== 202 || typeof queueId !== 'string') {
    obs.notes.push(`submit: ${submitted.status} ${submitted.json?.error?.code ?? submitted.transportError ?? ''}`);
    return;
  }
  const item = async () => {
    const server = await anyInstance(sim);
    const result = await exchange({ baseUrl: server.url, path: `/api/llm/queue/${queueId}`, method: 'GET', token: team.key, body: undefined, patienceMs: 15_000 });
    if (typeof result.json?.jobId === 'string') sim.observations.setJob(obs, result.json.jobId);
    return result.json;
  };
  if (then === 'attach') {
    const server = await anyInstance(sim);
    const attached = await exchange({ baseUrl: server.url, path: '/api/llm/queue/stream', token: team.key, body: { queueId }, patienceMs: sim.patienceMs, ...attachStyle });
    // Leaving the queue's stream detaches; the call runs on server-side, so it is not recorded as a client leaving.
    const observed = callObservation(call.tag, '/api/llm/queue/stream', server.child.pid, attached);
    sim.observations.addCall(obs, { ...observed, leftAt: undefined, leftWhere: attached.leftWhere && `detached (${attached.leftWhere})` });
  } else if (then === 'cancel') {
    await sleep(cancelAfterMs);
    const at = Date.now();
    const server = await anyInstance(sim);
    const cancelled = await exchange({ baseUrl: server.url, path: '/api/llm/queue/cancel', token: team.key, body: { queueId }, patienceMs: 15_000 });
    obs.endings.push({ requested: 'cancel', status: cancelled.status, code: cancelled.json?.error?.code, creditsCharged: undefined, at, answeredAt: cancelled.endedAt });
  }
  // Poll until the item ends; what it returns as its result is output the client received.
  for (let polls = 0; polls < 100; polls++) {
    const current = await item();
    if (current && !['queued', 'processing'].includes(current.status)) {
      if (current.result?.content || current.result?.toolCalls?.length) {
        sim.observations.addCall(obs, { tag: call.tag, endpoint: `/api/llm/queue/${queueId}`, pid: undefined, status: 200, contentChunks: 1, sawDone: true, errorEvents: 0, leftAt: undefined, leftWhere: undefined, transportError: undefined, startedAt: Date.now(), endedAt: Date.now() });
      }
      return;
    }
    await sleep(200);
  }
  obs.notes.push('queue item never ended');
};

/** An operator adds a few credits to a team (so teams that ran out come back). */
const topUp: Behaviour = async (sim, rng, op) => {
  const team = rng.pick(sim.teams);
  const credits = rng.int(3, 12);
  const obs = sim.observations.begin(op, 'top-up', team.teamId);
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = await anyInstance(sim);
    const result = await exchange({
      baseUrl: server.url,
      path: `/api/credits/teams/${team.teamId}/add`,
      token: MASTER_KEY,
      body: { credits, reason: `simulation top-up ${op}` },
      patienceMs: 15_000,
    });
    if (result.status !== 0 && result.status !== 503) {
      obs.notes.push(`top-up ${credits}: ${result.status}`);
      return;
    }
    await sleep(200);
  }
};

/**
 * Streams longer than the shutdown grace, opened on one instance just before it is stopped (SIGTERM): one-shot
 * streams (job routes and /v1) and calls of jobs the client completes afterwards on any instance. `flowing`
 * resolves once each has shown output or ended; `done` once the clients are finished. Their operations are
 * numbered from `firstOp`, after the scheduler's.
 */
export function streamsThroughShutdown(sim: SimContext, rng: Random, server: ServerProcess, firstOp: number) {
  const kinds = ['create-and-call-stream', 'create-and-call-stream', 'v1-stream', 'job', 'job'] as const;
  // Everything drawn first, in order; the job's id completes the endpoint once it exists.
  const planned = kinds.map((kind, i) => {
    const op = firstOp + i;
    const team = rng.pick(sim.teams);
    const extra = kind === 'create-and-call-stream' ? { team_id: team.teamId, job_type: 'sim-through-sigterm' } : kind === 'v1-stream' ? { stream: true } : {};
    const endpoint = kind === 'v1-stream' ? '/v1/chat/completions' : '/api/jobs/create-and-call-stream';
    const call = planCall(sim, rng, team, `o${op}c0`, endpoint, true, { kind: 'marathon', style: {}, extra, requireModel: kind === 'v1-stream' });
    // The whole marathon (13 s), far longer than the grace.
    delete call.body.max_tokens;
    delete call.body.max_completion_tokens;
    return { kind, op, team, call };
  });
  const flows: Promise<void>[] = [];
  const clients = planned.map(async ({ kind, op, team, call }) => {
    const obs = sim.observations.begin(op, `through-sigterm ${kind}`, team.teamId);
    let flowing!: () => void;
    flows.push(new Promise<void>((resolve) => (flowing = resolve)));
    // The operator tops the team up first, so these streams are not refused for want of credits.
    await exchange({ baseUrl: server.url, path: `/api/credits/teams/${team.teamId}/add`, token: MASTER_KEY, body: { credits: 30, reason: 'before the graceful stop' }, patienceMs: 15_000 });
    const jobId = kind === 'job' ? await createJob(sim, obs, team, 'sim-through-sigterm') : undefined;
    if (kind === 'job' && !jobId) return flowing();
    const endpoint = jobId ? callEndpoint(jobId, true) : call.endpoint;
    sim.observations.expectTag(obs, call.tag);
    const result = await exchange({ baseUrl: server.url, path: endpoint, token: team.key, body: call.body, patienceMs: sim.jobTimeoutMs + 30_000, onOutput: flowing });
    flowing();
    sim.observations.addCall(obs, callObservation(call.tag, endpoint, server.child.pid, result));
    const header = result.headers['x-job-id'];
    if (typeof header === 'string') sim.observations.setJob(obs, header);
    if (jobId) await endJob(sim, obs, team, jobId, 'completed');
  });
  return { flowing: Promise.all(flows), done: Promise.all(clients) };
}

export const BEHAVIOURS: Record<string, { weight: number; run: Behaviour }> = {
  'create-and-call-stream': { weight: 25, run: oneShotStream },
  'create-and-call': { weight: 8, run: oneShotPlain },
  'v1-stream': { weight: 12, run: openAiStream },
  v1: { weight: 8, run: openAiPlain },
  'multi-call': { weight: 22, run: multiCallJob },
  'cancel-during-calls': { weight: 7, run: cancelDuringCalls },
  abandon: { weight: 3, run: abandonJob },
  'outlive-timeout': { weight: 0.4, run: outliveTimeout },
  marathon: { weight: 0.4, run: marathonStream },
  queue: { weight: 3, run: queuedCall },
  'top-up': { weight: 5, run: topUp },
};

export const BEHAVIOUR_WEIGHTS = Object.fromEntries(Object.entries(BEHAVIOURS).map(([name, b]) => [name, b.weight])) as Record<string, number>;
