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

export interface Arm {
  id: string;
  label: string;
  kind: ArmKind;
  /** Worker i sends targets[i % targets.length] (creditgate arms: one per team). */
  targets: StreamTarget[];
}

const MESSAGES = [{ role: 'user', content: 'Say twenty words.' }];

export interface ArmUrls {
  upstreamUrl: string;
  proxyUrl: string;
  creditgateUrl: string;
  teams: { teamId: string; virtualKey: string }[];
  modelGroup: string;
}

export function buildArms(urls: ArmUrls): Arm[] {
  const openAiBody = { model: UPSTREAM_MODEL, messages: MESSAGES, stream: true };
  const auth = (virtualKey: string) => ({ authorization: `Bearer ${virtualKey}` });
  return [
    {
      id: 'upstream',
      label: '(1) upstream direct',
      kind: 'upstream',
      targets: [{ url: `${urls.upstreamUrl}/v1/chat/completions`, headers: {}, body: openAiBody, expectedContent: EXPECTED_CONTENT }],
    },
    {
      id: 'proxy',
      label: '(2) pass-through proxy',
      kind: 'proxy',
      targets: [{ url: `${urls.proxyUrl}/v1/chat/completions`, headers: {}, body: openAiBody, expectedContent: EXPECTED_CONTENT }],
    },
    {
      id: 'create-and-call-stream',
      label: '(3) cg create-and-call-stream',
      kind: 'creditgate',
      targets: urls.teams.map(({ teamId, virtualKey }) => ({
        url: `${urls.creditgateUrl}/api/jobs/create-and-call-stream`,
        headers: auth(virtualKey),
        body: { team_id: teamId, job_type: 'bench', model: urls.modelGroup, messages: MESSAGES },
        expectedContent: EXPECTED_CONTENT,
      })),
    },
    {
      id: 'v1-chat-completions',
      label: '(4) cg /v1/chat/completions',
      kind: 'creditgate',
      targets: urls.teams.map(({ virtualKey }) => ({
        url: `${urls.creditgateUrl}/v1/chat/completions`,
        headers: auth(virtualKey),
        body: { model: urls.modelGroup, messages: MESSAGES, stream: true },
        expectedContent: EXPECTED_CONTENT,
      })),
    },
  ];
}
