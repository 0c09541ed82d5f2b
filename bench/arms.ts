/**
 * What is measured: the scripted upstream's shape and the four arms (the same streamed chat request sent to
 * the upstream directly, through the pass-through proxy, and through creditgate's two streaming routes).
 */
import { startSimulatedUpstream, type ScriptStep, type SimulatedUpstream } from '../src/upstream/simulated-server.js';
import type { StreamTarget } from './load.js';

export const UPSTREAM_SHAPE = { chunks: 20, firstTokenDelayMs: 50, chunkDelayMs: 10 } as const;
export const UPSTREAM_MODEL = 'sim-small';

/**
 * paced: the stated shape; zero: the same 20 chunks with no delay (saturation); hold: the first chunk at once,
 * then the stream stays open until the client leaves (memory per open stream).
 */
export type UpstreamMode = 'paced' | 'zero' | 'hold';

const WORDS = Array.from({ length: UPSTREAM_SHAPE.chunks }, (_, i) => `w${i} `);
export const EXPECTED_CONTENT = WORDS.join('');

function stepsFor(mode: UpstreamMode): ScriptStep[] {
  if (mode === 'hold') return [{ type: 'content', text: WORDS[0] as string }, { type: 'hang' }];
  const delay = (i: number) => (mode === 'zero' ? 0 : i === 0 ? UPSTREAM_SHAPE.firstTokenDelayMs : UPSTREAM_SHAPE.chunkDelayMs);
  return [...WORDS.map((text, i): ScriptStep => ({ type: 'content', text, delayMs: delay(i) })), { type: 'finish', reason: 'stop' }];
}

export interface BenchUpstream {
  upstream: SimulatedUpstream;
  setMode(mode: UpstreamMode): void;
  /** The simulated upstream records every request; the bench forgets them between phases. */
  forgetRequests(): void;
}

export async function startBenchUpstream(): Promise<BenchUpstream> {
  const scripts: Record<UpstreamMode, ScriptStep[]> = { paced: stepsFor('paced'), zero: stepsFor('zero'), hold: stepsFor('hold') };
  let mode: UpstreamMode = 'paced';
  const upstream = await startSimulatedUpstream({
    host: '127.0.0.1',
    responder: () => ({ steps: scripts[mode], usage: { prompt_tokens: 8, completion_tokens: UPSTREAM_SHAPE.chunks } }),
  });
  return {
    upstream,
    setMode: (next) => {
      mode = next;
    },
    forgetRequests: () => {
      upstream.requests.splice(0);
    },
  };
}

export type ArmKind = 'upstream' | 'proxy' | 'creditgate';

/**
 * The creditgate server processes the bench runs, by the environment they get on top of what every one gets
 * (DATABASE_URL, LLM_BASE_URL, MASTER_KEY, HOST, PORT=0). `default` sets nothing else: LOG_LEVEL, DB_POOL_MAX,
 * DB_GROUP_COMMIT and the rest are what `npm start` gives a user (src/config.ts).
 */
export type ServerVariant = 'default' | 'no-group-commit' | 'tuned';
export const SERVER_VARIANTS: Record<ServerVariant, { label: string; env: Record<string, string> }> = {
  default: { label: 'the defaults of `npm start`', env: {} },
  'no-group-commit': { label: 'the defaults with DB_GROUP_COMMIT=false', env: { DB_GROUP_COMMIT: 'false' } },
  tuned: { label: 'tuned: LOG_LEVEL=silent, DB_POOL_MAX=8', env: { LOG_LEVEL: 'silent', DB_POOL_MAX: '8' } },
};

/** A server process of the bench: one of creditgate's variants, or the bare pass-through proxy alone. */
export type ServerKey = ServerVariant | 'proxy';

export interface Arm {
  id: string;
  label: string;
  kind: ArmKind;
  /** The server process that serves it (the upstream arm: none; it names the proxy's, which it does not use). */
  server: ServerKey;
  /** Worker i sends targets[i % targets.length] (creditgate arms: one per team). */
  targets: StreamTarget[];
}

const VOCABULARY = 'the a of to and in customer invoice refund order shipping account policy report quarter revenue summarize explain following document section table please answer question about which when'.split(' ');

/**
 * The user message every arm sends: one short sentence, or with BENCH_PROMPT_BYTES a prompt that long of words drawn
 * from a small vocabulary, some with numbers (the same text every run): it compresses about as prose does, so what
 * the database spends storing it is realistic, where one repeated sentence would compress to nothing.
 */
function promptContent(): string {
  const raw = process.env.BENCH_PROMPT_BYTES;
  if (!raw) return 'Say twenty words.';
  const bytes = Number(raw);
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 900_000) throw new Error(`BENCH_PROMPT_BYTES must be an integer in [1, 900000], got "${raw}"`);
  let seed = 1;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31);
  const words: string[] = [];
  for (let length = 0; length < bytes; ) {
    const word = VOCABULARY[next() % VOCABULARY.length]! + (next() % 10 < 3 ? String(next() % 1000) : '');
    words.push(word);
    length += word.length + 1;
  }
  return words.join(' ').slice(0, bytes);
}

const MESSAGES = [{ role: 'user', content: promptContent() }];

export interface BenchTeam {
  teamId: string;
  virtualKey: string;
}

export interface ArmUrls {
  upstreamUrl: string;
  proxyUrl: string;
  /** creditgate's URL in each server process that runs. */
  creditgateUrls: Partial<Record<ServerVariant, string>>;
  /** The bench's teams, without limits. */
  teams: BenchTeam[];
  /** The same number of teams with every limit set far above what the bench asks for. */
  limitedTeams: BenchTeam[];
  modelGroup: string;
}

export const ARM_IDS = [
  'upstream',
  'proxy',
  'create-and-call-stream',
  'v1-chat-completions',
  'create-and-call-stream-limits',
  'create-and-call-stream-no-group-commit',
  'create-and-call-stream-tuned',
] as const;

export function buildArms(urls: ArmUrls): Arm[] {
  const openAiBody = { model: UPSTREAM_MODEL, messages: MESSAGES, stream: true };
  const auth = (virtualKey: string) => ({ authorization: `Bearer ${virtualKey}` });
  const createAndCall = (baseUrl: string, teams: BenchTeam[]): StreamTarget[] =>
    teams.map(({ teamId, virtualKey }) => ({
      url: `${baseUrl}/api/jobs/create-and-call-stream`,
      headers: auth(virtualKey),
      body: { team_id: teamId, job_type: 'bench', model: urls.modelGroup, messages: MESSAGES },
      expectedContent: EXPECTED_CONTENT,
    }));
  const arms: Arm[] = [
    {
      id: 'upstream',
      label: '(1) upstream direct',
      kind: 'upstream',
      server: 'proxy',
      targets: [{ url: `${urls.upstreamUrl}/v1/chat/completions`, headers: {}, body: openAiBody, expectedContent: EXPECTED_CONTENT }],
    },
    {
      id: 'proxy',
      label: '(2) pass-through proxy',
      kind: 'proxy',
      server: 'proxy',
      targets: [{ url: `${urls.proxyUrl}/v1/chat/completions`, headers: {}, body: openAiBody, expectedContent: EXPECTED_CONTENT }],
    },
  ];
  const main = urls.creditgateUrls.default;
  if (main) {
    arms.push(
      { id: 'create-and-call-stream', label: '(3) cg create-and-call-stream', kind: 'creditgate', server: 'default', targets: createAndCall(main, urls.teams) },
      {
        id: 'v1-chat-completions',
        label: '(4) cg /v1/chat/completions',
        kind: 'creditgate',
        server: 'default',
        targets: urls.teams.map(({ virtualKey }) => ({
          url: `${main}/v1/chat/completions`,
          headers: auth(virtualKey),
          body: { model: urls.modelGroup, messages: MESSAGES, stream: true },
          expectedContent: EXPECTED_CONTENT,
        })),
      },
      {
        id: 'create-and-call-stream-limits',
        label: '(5) cg (3) + team limits',
        kind: 'creditgate',
        server: 'default',
        targets: createAndCall(main, urls.limitedTeams),
      },
    );
  }
  const noGroupCommit = urls.creditgateUrls['no-group-commit'];
  if (noGroupCommit) {
    arms.push({
      id: 'create-and-call-stream-no-group-commit',
      label: '(6) cg (3) DB_GROUP_COMMIT=false',
      kind: 'creditgate',
      server: 'no-group-commit',
      targets: createAndCall(noGroupCommit, urls.teams),
    });
  }
  const tuned = urls.creditgateUrls.tuned;
  if (tuned) {
    arms.push({ id: 'create-and-call-stream-tuned', label: '(7) cg (3) tuned', kind: 'creditgate', server: 'tuned', targets: createAndCall(tuned, urls.teams) });
  }
  return arms;
}
