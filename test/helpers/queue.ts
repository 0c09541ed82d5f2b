import { expect } from 'vitest';
import type { ApiResponse, TestApp } from './app.js';
import type { TeamSetup } from './factories.js';
import { poll } from './wait.js';

/** The queue API as a team's client uses it: submit (streamed), read an item, wait for it to end. */

export const QUEUE_ENDED = ['completed', 'error', 'cancelled'];

type Target = Pick<TestApp, 'request'>;

const messages = (text: string) => [{ role: 'user', content: text }];

export function submitQueued(target: Target, team: TeamSetup, text: string, extra: Record<string, unknown> = {}): Promise<ApiResponse> {
  return target.request('POST', '/api/llm/complete', { token: team.key, body: { model: team.group, messages: messages(text), stream: true, ...extra } });
}

/** Submits and expects it accepted; returns its queue id. */
export async function submitQueuedOk(target: Target, team: TeamSetup, text: string, extra: Record<string, unknown> = {}): Promise<string> {
  const response = await submitQueued(target, team, text, extra);
  expect(response.status, JSON.stringify(response.body)).toBe(202);
  return response.body.data.queueId as string;
}

export async function queueItem(target: Target, team: TeamSetup, queueId: string) {
  const response = await target.request('GET', `/api/llm/queue/${queueId}`, { token: team.key });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as { status: string; jobId: string; callId: string | null; error: string | null; result: { content: string | null } | null };
}

export function untilQueueItemEnded(target: Target, team: TeamSetup, queueId: string, timeoutMs = 20_000) {
  return poll(
    async () => {
      const item = await queueItem(target, team, queueId);
      return QUEUE_ENDED.includes(item.status) ? item : undefined;
    },
    timeoutMs,
    `queue item ${queueId} to end`,
    25,
  );
}
