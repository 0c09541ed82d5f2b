import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import type { ApiResponse, TestApp } from './app.js';

/** Reads of the public API a test checks its outcome with, each expected to succeed. */

export interface Balance {
  balance: number;
  held: number;
  credits_remaining: number;
  credits_used: number;
}

/** `GET /api/credits/teams/:id/balance` with the master key. */
export async function balanceOf(app: TestApp, teamId: string): Promise<Balance> {
  const response = await app.request('GET', `/api/credits/teams/${teamId}/balance`);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as Balance;
}

/** `GET /api/jobs/:id` with the team's key. */
export async function getJob(app: TestApp, team: { key: string }, jobId: string): Promise<any> {
  const response = await app.request('GET', `/api/jobs/${jobId}`, { token: team.key });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
}

/** The job once its status is `wanted`, asked every 25 ms. */
export async function waitForJobStatus(app: TestApp, team: { key: string }, jobId: string, wanted: string, timeoutMs = 10_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(app, team, jobId);
    if (job.status === wanted) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${job.status} after ${timeoutMs} ms, expected ${wanted}`);
    await sleep(25);
  }
}

/** A JSON error answer: `{ error }` and nothing else, with that status (and code, when given). Returns the error. */
export function expectErrorBody(response: ApiResponse, status: number, code?: string) {
  const dump = JSON.stringify(response.body);
  expect(response.status, dump).toBe(status);
  expect(response.headers.get('content-type'), dump).toMatch(/^application\/json/);
  expect(Object.keys(response.body), dump).toEqual(['error']);
  expect(typeof response.body.error.message, dump).toBe('string');
  expect(typeof response.body.error.type, dump).toBe('string');
  if (code !== undefined) expect(response.body.error.code, dump).toBe(code);
  return response.body.error as { type: string; code: string; message: string; param: string | null };
}
