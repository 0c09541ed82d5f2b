import type { RecordedRequest, ScriptStep, UpstreamScript } from '../../../src/upstream/simulated-server.js';
import type { Random } from './random.js';

/**
 * What the scripted upstream does for each call of the simulation. Every request creditgate sends upstream
 * carries the tag of the call it belongs to (`[sim:o12c3]` in its last user message); the plan drawn for that call
 * says what each attempt gets (a retry on the group's next model is the next attempt). Scripts always honour the
 * request's max_tokens / max_completion_tokens, as a real model does: the completion never exceeds it.
 */

export type UpstreamKind =
  | 'short'
  | 'long'
  | 'tools'
  | 'inband-error'
  | 'reset'
  | 'http-500'
  | 'slow'
  | 'hang-first'
  | 'hang-mid'
  | 'no-usage'
  /** A stream that outlives the job timeout (about 13 s of 100 ms chunks). */
  | 'marathon';

export interface AttemptPlan {
  kind: UpstreamKind;
  /** Content chunks planned (before max_tokens truncation). */
  chunks: number;
  /** Delay before the first chunk and between chunks. */
  firstDelayMs: number;
  delayMs: number;
  /** For errors, resets and mid-stream hangs: how many chunks go out first. */
  after: number;
  headersDelayMs: number;
}

export interface CallPlan {
  tag: string;
  attempts: AttemptPlan[];
  /** The request carries tools (the upstream may call them). */
  withTools: boolean;
}

const WEIGHTS: Record<Exclude<UpstreamKind, 'marathon'>, number> = {
  short: 42,
  long: 5,
  tools: 10,
  'inband-error': 8,
  reset: 6,
  'http-500': 7,
  slow: 8,
  'hang-first': 1.5,
  'hang-mid': 1.5,
  'no-usage': 10,
};

export function drawAttempt(rng: Random, kind: UpstreamKind = rng.weighted(WEIGHTS)): AttemptPlan {
  const plan: AttemptPlan = { kind, chunks: rng.int(2, 24), firstDelayMs: rng.int(0, 15), delayMs: rng.int(0, 6), after: 0, headersDelayMs: 0 };
  if (rng.chance(0.1)) plan.headersDelayMs = rng.int(10, 300);
  switch (kind) {
    case 'long':
      plan.chunks = rng.int(100, 500);
      plan.delayMs = 0;
      break;
    case 'slow':
      plan.chunks = rng.int(10, 30);
      plan.firstDelayMs = rng.int(50, 300);
      plan.delayMs = rng.int(20, 60);
      break;
    case 'inband-error':
    case 'reset':
    case 'hang-mid':
      plan.after = rng.int(kind === 'reset' ? 0 : 1, Math.max(1, plan.chunks - 1));
      break;
    case 'marathon':
      plan.chunks = 130;
      plan.firstDelayMs = 50;
      plan.delayMs = 100;
      break;
  }
  return plan;
}

/** One to three attempts: failures before the first byte are retried on the group's next model. */
export function drawCallPlan(rng: Random, tag: string, kind?: UpstreamKind): CallPlan {
  const first = drawAttempt(rng, kind);
  const attempts = [first];
  if (first.kind === 'http-500' || first.kind === 'hang-first' || (first.kind === 'reset' && first.after === 0)) attempts.push(drawAttempt(rng));
  return { tag, attempts, withTools: first.kind === 'tools' || rng.chance(0.15) };
}

export const TAG_PATTERN = /\[sim:([a-z0-9]+)\]/;

export function tagOfRequest(body: unknown): string | undefined {
  const messages = (body as { messages?: { content?: unknown }[] } | undefined)?.messages;
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    const content = messages[i]?.content;
    const match = typeof content === 'string' ? TAG_PATTERN.exec(content) : null;
    if (match) return match[1];
  }
  return undefined;
}

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima'];

/** A chunk of about 60 characters (long outputs make real bodies, a few hundred kB). */
function chunkText(i: number, long: boolean): string {
  if (!long) return `${WORDS[i % WORDS.length]} `;
  return `${WORDS[i % WORDS.length]}-${i} lorem ipsum dolor sit amet consectetur adipiscing elit `;
}

function maxTokensOf(body: any): number | undefined {
  const limit = body?.max_completion_tokens ?? body?.max_tokens;
  return Number.isInteger(limit) && limit > 0 ? limit : undefined;
}

/** Tokens a tool call costs in the simulated upstream's usage (see resolveUsage there). */
const TOOL_CALL_TOKENS = 10;

/**
 * The script for one attempt: content (and tool calls), cut to the request's max_tokens (finish `length`), then
 * the planned ending. The simulated upstream counts one completion token per content chunk and ten per tool call.
 */
export function scriptFor(plan: AttemptPlan, body: any): UpstreamScript {
  const limit = maxTokensOf(body) ?? Number.POSITIVE_INFINITY;
  const steps: ScriptStep[] = [];
  let tokens = 0;
  let truncated = false;
  const delay = (i: number) => (i === 0 ? plan.firstDelayMs : plan.delayMs);
  const headersDelay = plan.headersDelayMs ? { headersDelayMs: plan.headersDelayMs } : {};
  switch (plan.kind) {
    case 'http-500':
      return { status: 500, errorMessage: 'simulated overload', ...headersDelay };
    case 'hang-first':
      return { steps: [{ type: 'hang' }], ...headersDelay };
  }
  const contentChunks = ['inband-error', 'reset', 'hang-mid'].includes(plan.kind) ? plan.after : plan.chunks;
  for (let i = 0; i < contentChunks; i++) {
    if (tokens + 1 > limit) {
      truncated = true;
      break;
    }
    steps.push({ type: 'content', text: chunkText(i, plan.kind === 'long'), delayMs: delay(i) });
    tokens++;
  }
  if (plan.kind === 'tools' && !truncated) {
    for (let index = 0; index < 2 && tokens + TOOL_CALL_TOKENS <= limit; index++) {
      steps.push({ type: 'tool_call', index, id: `call_${index}`, name: 'get_weather', arguments: '', delayMs: plan.delayMs });
      steps.push({ type: 'tool_call', index, arguments: '{"location":', delayMs: plan.delayMs });
      steps.push({ type: 'tool_call', index, arguments: `"City ${index}"}`, delayMs: plan.delayMs });
      tokens += TOOL_CALL_TOKENS;
    }
  }
  const usage = plan.kind === 'no-usage' ? { usage: 'none' as const } : {};
  if (truncated) return { steps: [...steps, { type: 'finish', reason: 'length' }], ...usage, ...headersDelay };
  switch (plan.kind) {
    case 'inband-error':
      return { steps: [...steps, { type: 'error', message: 'simulated model failure', delayMs: plan.delayMs }], ...headersDelay };
    case 'reset':
      return { steps: [...steps, { type: 'destroy', delayMs: plan.delayMs }], ...headersDelay };
    case 'hang-mid':
      return { steps: [...steps, { type: 'hang' }], ...headersDelay };
  }
  const reason = steps.some((s) => s.type === 'tool_call') ? 'tool_calls' : 'stop';
  return { steps: [...steps, { type: 'finish', reason }], ...usage, ...headersDelay };
}

/** The plans of every call of a run, and the responder that plays them. */
export class UpstreamPlans {
  private readonly plans = new Map<string, CallPlan>();
  private readonly attempts = new Map<string, number>();

  register(plan: CallPlan): void {
    this.plans.set(plan.tag, plan);
  }

  get(tag: string): CallPlan | undefined {
    return this.plans.get(tag);
  }

  /** For `upstream.setResponder`: a tagged request gets its plan's next attempt, anything else a short answer. */
  readonly responder = (request: RecordedRequest): UpstreamScript => {
    const tag = tagOfRequest(request.body);
    const plan = tag ? this.plans.get(tag) : undefined;
    if (!plan || !tag) return { steps: [{ type: 'content', text: 'ok ' }] };
    const attempt = this.attempts.get(tag) ?? 0;
    this.attempts.set(tag, attempt + 1);
    return scriptFor(plan.attempts[Math.min(attempt, plan.attempts.length - 1)]!, request.body);
  };
}
