import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedUpstream, type SimulatedUpstream } from '../../src/upstream/simulated-server.js';
import { parseSse, postStream } from '../helpers/sse.js';
import { CHAT, api, freshDatabase, fundedTeam, spawnServer, stopAllServers, type FreshDatabase, type ServerProcess } from '../reliability/support.js';

/**
 * An upstream served over HTTPS, as hosted providers and most LiteLLM deployments are: the scripted upstream with
 * a certificate made for this run, and real creditgate processes. One trusts the certificate the way an operator
 * trusts a private CA (NODE_EXTRA_CA_CERTS), so streamed calls (creditgate's own transport, node:https) and
 * non-streamed ones (the openai SDK) go through TLS and are billed; the other does not trust it, so the
 * certificate check is on: the call fails with 502 and nothing is charged.
 */

const CONTENT = 'Hello from a TLS upstream';

let db: FreshDatabase;
let upstream: SimulatedUpstream;
let certDir: string;
let trusting: ServerProcess;
let distrusting: ServerProcess;

beforeAll(async () => {
  const pem = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
    ],
  });
  certDir = await mkdtemp(path.join(tmpdir(), 'creditgate-tls-'));
  const certFile = path.join(certDir, 'upstream.pem');
  await writeFile(certFile, pem.cert);
  [db, upstream] = await Promise.all([
    freshDatabase(),
    startSimulatedUpstream({
      tls: { key: pem.private, cert: pem.cert },
      responder: () => ({ steps: CONTENT.split(' ').map((word, i) => ({ type: 'content' as const, text: i === 0 ? word : ` ${word}` })) }),
    }),
  ]);
  expect(upstream.baseURL).toMatch(/^https:\/\//);
  [trusting, distrusting] = await Promise.all([
    spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL, env: { NODE_EXTRA_CA_CERTS: certFile } }),
    spawnServer({ databaseUrl: db.url, upstreamBaseURL: upstream.baseURL }),
  ]);
});

afterAll(async () => {
  await stopAllServers();
  await upstream?.close();
  await db?.drop();
  if (certDir) await rm(certDir, { recursive: true, force: true });
});

async function creditsUsed(teamId: string): Promise<number> {
  const balance = await api<{ credits_used: number; held: number }>(trusting.url, 'GET', `/api/credits/teams/${teamId}/balance`);
  expect(balance.status).toBe(200);
  expect(balance.body.held).toBe(0);
  return balance.body.credits_used;
}

describe('an upstream served over HTTPS', () => {
  it('streams, answers and bills every kind of call when its certificate is trusted', async () => {
    const team = await fundedTeam(trusting.url, 10);
    const before = upstream.requests.length;

    const streamed = await postStream(trusting, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'tls', ...CHAT });
    const streamedText = await streamed.text();
    expect(streamed.status, streamedText).toBe(200);
    const parsed = parseSse(streamedText, { strict: true });
    expect(parsed).toMatchObject({ content: CONTENT, errors: [], endsWithDone: true });

    const compat = await postStream(trusting, '/v1/chat/completions', team.key, { model: team.group, stream: true, ...CHAT });
    const compatText = await compat.text();
    expect(compat.status, compatText).toBe(200);
    expect(parseSse(compatText, { strict: true })).toMatchObject({ content: CONTENT, errors: [], endsWithDone: true });

    const plain = await api<{ response: { choices: { message: { content: string } }[] }; status: string }>(
      trusting.url,
      'POST',
      '/api/jobs/create-and-call',
      { token: team.key, body: { team_id: team.teamId, job_type: 'tls', ...CHAT } },
    );
    expect(plain.status, JSON.stringify(plain.body)).toBe(201);
    expect(plain.body.response.choices[0]?.message.content).toBe(CONTENT);
    expect(plain.body.status).toBe('completed');

    const served = upstream.requests.slice(before);
    expect(served.map((request) => request.body.stream === true)).toEqual([true, true, false]);
    expect(await creditsUsed(team.teamId)).toBe(3);
  });

  it('refuses an upstream whose certificate is not trusted, and charges nothing', async () => {
    const team = await fundedTeam(trusting.url, 10);
    const before = upstream.requests.length;

    const streamed = await postStream(distrusting, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'tls', ...CHAT });
    const body = (await streamed.json()) as { error: { code: string } };
    expect(streamed.status).toBe(502);
    expect(body.error.code).toBe('upstream_error');

    const plain = await api(distrusting.url, 'POST', '/api/jobs/create-and-call', { token: team.key, body: { team_id: team.teamId, job_type: 'tls', ...CHAT } });
    expect(plain.status).toBe(502);

    // The TLS handshake failed, so no request reached the upstream's handler.
    expect(upstream.requests.length).toBe(before);
    expect(await creditsUsed(team.teamId)).toBe(0);
    // The operator's log says why (the logger writes asynchronously: the line may follow the answer).
    await expect.poll(() => distrusting.output(), { timeout: 10_000 }).toContain('self-signed certificate');
  });
});
