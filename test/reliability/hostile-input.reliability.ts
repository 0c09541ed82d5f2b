import fc from 'fast-check';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../../src/http/routes/index.js';
import type { RouteSpec } from '../../src/http/route.js';
import { TEST_MASTER_KEY, createTestApp, type TestApp } from '../helpers/app.js';
import type { TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { safeJson } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';
import { fundedTeam, isErrorShape, ledgerState, type LedgerState } from './support.js';

/**
 * Hostile input against every route of `allRoutes`: generated malformed bodies (anything, arbitrary JSON, wrong
 * types for each schema field, huge and deeply nested values, prototype-pollution keys), valid bodies with one
 * field replaced by something hostile (NUL characters, lone surrogates, 10k-deep nesting, 300 kB strings...),
 * garbage credentials, Idempotency-Keys, content types and encodings, and hostile path and query values.
 * Requests go one at a time (no load shedding). For every answer:
 * - never a 5xx (a 503 would only be load shedding, which one request at a time cannot trigger);
 * - an error is always the contract's JSON envelope, a success is JSON (or SSE / text for the routes made so);
 * - the fixture team's money does not move unless the request succeeded (2xx): balance and held amount unchanged,
 *   no charge, grant or adjustment written (a refusal that created and failed a job writes a net-zero hold and
 *   release pair; those are counted, printed with RELIABILITY_VERBOSE=1, and allowed);
 * and at the end the ledger is consistent and the process still answers /health and /ready.
 * Findings of the deterministic part are grouped (problem | input | route -> fields); generated ones are shrunk.
 * FC_SEED=<n> replays a generated run.
 */

const RUNS_PER_ROUTE = 60;
/** The generated part of the test stops early rather than run past this (the whole file stays within ~60 s). */
const PROPERTY_BUDGET_MS = 25_000;

let app: TestApp;
/** The team whose money must not move on a refused request; team routes use its key. */
let team: TeamSetup;
/** Admin routes with a team in their path use this one, so they can succeed without touching the fixture. */
let decoy: TeamSetup;
let jobIds: string[];

async function newJob(): Promise<string> {
  const job = await app.request('POST', '/api/jobs/create', { token: team.key, body: { team_id: team.teamId, job_type: 'fixture' } });
  expect(job.status, JSON.stringify(job.body)).toBe(201);
  return job.body.job_id;
}

beforeAll(async () => {
  app = await createTestApp();
  team = await fundedTeam(app.url, 1_000_000, { masterKey: TEST_MASTER_KEY });
  decoy = await fundedTeam(app.url, 1_000, { masterKey: TEST_MASTER_KEY });
  jobIds = [];
  for (let i = 0; i < 20; i++) jobIds.push(await newJob());
});

afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------------------------
// Request generation
// ---------------------------------------------------------------------------------------------------------------

interface HostileRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/** How fast-check prints a request in a failure report: bodies can be 300 kB. */
function printable<T extends HostileRequest>(request: T): T {
  return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request) });
}

/**
 * fetch only sends header values made of tab, visible ASCII, space and bytes 0x80-0xff (no control characters);
 * everything else in a generated value is dropped, the rest stays as hostile as it was.
 */
const headerSafe = (value: string) =>
  [...value]
    .filter((c) => {
      const code = c.charCodeAt(0);
      return code === 0x09 || (code >= 0x20 && code <= 0x7e) || (code >= 0x80 && code <= 0xff);
    })
    .join('');

const nastyStrings = [
  '',
  ' ',
  '%',
  '%zz',
  '%E0%A4%A',
  '%00',
  '%2F..%2F..%2Fetc%2Fpasswd',
  '..',
  '.',
  'null',
  'undefined',
  '-1',
  '0',
  '1e309',
  'NaN',
  'true',
  "' OR '1'='1' --",
  '"; DROP TABLE credit_ledger; --',
  '<script>alert(1)</script>',
  '${7*7}{{7*7}}',
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  '💥🔥\u202e\u200b',
  '\u0000',
  'job_0000000000000000000000',
  'job_aaaaaaaaaaaaaaaaaaaaa',
  'x'.repeat(300),
  'x'.repeat(5_000),
];

const shortString = fc.string({ maxLength: 40, unit: 'binary' });
const longString = fc.integer({ min: 1_000, max: 20_000 }).map((n) => 'ä'.repeat(n));

/** Anything but the right thing for a schema field. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.anything({ maxDepth: 3, maxKeys: 5 }) },
  { weight: 2, arbitrary: shortString },
  { weight: 1, arbitrary: longString },
  { weight: 1, arbitrary: fc.constantFrom(...nastyStrings) },
  { weight: 2, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 0, -0, 1e308, -1e308, 2 ** 53, 2 ** 63, 0.0000001, 1.5)) },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, [null], JSON.parse('{"__proto__":{"admin":true}}'), { constructor: { prototype: { polluted: 1 } } }) },
  { weight: 1, arbitrary: fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.array(fc.constant({ role: 'user', content: [] }), { minLength: 2_001, maxLength: 2_001 }) },
);

function shapeKeys(schema: unknown): string[] {
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

const jsonText = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    return '{}';
  }
};

function bodyArbitrary(route: RouteSpec): fc.Arbitrary<string | undefined> {
  const keys = shapeKeys(route.body);
  const wrongTypes =
    keys.length > 0
      ? fc.record(Object.fromEntries(keys.map((key) => [key, hostileValue])), { requiredKeys: [] }).map(jsonText)
      : fc.constant('{}');
  // Each field wrong in turn, the others absent or also wrong, plus keys the schema does not know.
  const withExtraKeys = fc
    .tuple(wrongTypes, fc.dictionary(fc.oneof(shortString, fc.constantFrom('__proto__', 'constructor', 'team_id', 'job_id', 'credits')), hostileValue, { maxKeys: 3 }))
    .map(([base, extra]) => jsonText({ ...(safeJson(base) as object), ...extra }));
  const mutated = mutatedBody(route);
  return fc.oneof(
    ...(mutated ? [{ weight: 10, arbitrary: mutated as fc.Arbitrary<string | undefined> }] : []),
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: fc.anything({ maxDepth: 4 }).map(jsonText) },
    { weight: 3, arbitrary: fc.json({ maxDepth: 4 }) },
    { weight: 5, arbitrary: wrongTypes },
    { weight: 2, arbitrary: withExtraKeys },
    { weight: 2, arbitrary: fc.string({ maxLength: 200, unit: 'binary' }) },
    { weight: 1, arbitrary: fc.json().map((text) => text.slice(0, Math.max(0, text.length - 1))) },
    { weight: 1, arbitrary: fc.constantFrom('null', '', ' ', '[]', '"str"', '1', 'true', '\ufeff{}', '{"a":1}garbage', '{"a":1,}', "{'a':1}", 'NaN', '{"__proto__":{"isAdmin":true}}') },
  );
}

function pathValue(route: RouteSpec): fc.Arbitrary<string> {
  // The fixture team and its jobs are offered only where a team key can reach them: an admin route with the
  // fixture team in its path (suspend, budget mode...) would legitimately change the fixture.
  const fixtures = route.auth === 'admin' ? [decoy.teamId, decoy.group, 'sim-small', 'no-such-thing'] : [team.teamId, ...jobIds];
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...fixtures) },
    { weight: 3, arbitrary: fc.string({ maxLength: 80, unit: 'binary' }).map(encodeURIComponent) },
    { weight: 2, arbitrary: fc.constantFrom(...nastyStrings.filter((s) => s !== '' && !s.includes('\u0000'))) },
    { weight: 1, arbitrary: fc.constantFrom('%zz', '%', '%c0%af', '%ff%fe', '%25', 'a%00b', '%20', '~', '!$&\'()*+,;=:@') },
  );
}

function queryArbitrary(route: RouteSpec): fc.Arbitrary<string> {
  const keys = [...shapeKeys(route.query), 'limit', 'cursor', '__proto__', 'constructor[prototype][x]', 'a[b]'];
  const value = fc.oneof(shortString, fc.constantFrom(...nastyStrings), fc.integer().map(String), fc.constantFrom('-1', '0', '201', '1e3', '1.5', '99999999999999999999'));
  const pairs = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...keys), shortString), value), { maxLength: 4 }).map((entries) => {
    const params = new URLSearchParams();
    for (const [k, v] of entries) params.append(k, v);
    return params.toString();
  });
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant('') },
    { weight: 4, arbitrary: pairs.map((q) => (q ? `?${q}` : '')) },
    { weight: 1, arbitrary: fc.constantFrom('?%zz=1', '?limit=%', '?limit=1&limit=2', '?=', '?&&&', '?limit[]=1', `?cursor=${'x'.repeat(4_000)}`) },
  );
}

function authorization(route: RouteSpec): fc.Arbitrary<string | undefined> {
  const right = route.auth === 'admin' ? TEST_MASTER_KEY : route.auth === 'public' ? undefined : team.key;
  const wrongKind = route.auth === 'admin' ? team.key : TEST_MASTER_KEY;
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(right === undefined ? undefined : `Bearer ${right}`) },
    { weight: 1, arbitrary: fc.constant(`Bearer ${wrongKind}`) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 2,
      arbitrary: fc.oneof(
        shortString.map(headerSafe),
        shortString.map((s) => `Bearer ${headerSafe(s)}`),
        fc.constantFrom(
          'Bearer',
          'Bearer ',
          'Basic dXNlcjpwYXNz',
          'bearer sk-',
          `Bearer sk-${'a'.repeat(600)}`,
          `Bearer ${'x'.repeat(5_000)}`,
          `Bearer ${team.key}x`,
          `Bearer ${team.key} ${team.key}`,
          `BEARER   ${team.key}   `,
          `Bearer ${TEST_MASTER_KEY.slice(0, -1)}`,
          'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
          'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.AAAA',
          'Bearer ÿÿÿÿ',
        ),
      ),
    },
  );
}

const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      undefined,
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=xyz',
      'application/json; charset=utf-16',
      'application/json; charset=bogus',
      'application/json; charset=latin1',
      'application/merge-patch+json',
      'application/xml',
      '*/*',
      'application/json, text/plain',
      ';;;',
    ),
  },
  { weight: 1, arbitrary: shortString.map(headerSafe) },
);

// ---------------------------------------------------------------------------------------------------------------
// Valid bodies, and one field of them made hostile
// ---------------------------------------------------------------------------------------------------------------

const unique = () => `fz-${Math.random().toString(36).slice(2, 10)}`;
const chat = () => [{ role: 'user', content: 'hello' }];

/** A body each write route accepts (with the path the generators give it), so one hostile field reaches deep code. */
const VALID_BODIES: Record<string, () => Record<string, unknown>> = {
  'POST /api/admin-users/create': () => ({ email: `${unique()}@example.com`, password: 'a long passphrase 123' }),
  'POST /api/admin-users/login': () => ({ email: 'nobody@example.com', password: 'a long passphrase 123' }),
  'POST /api/organizations/create': () => ({ organization_id: unique(), name: 'Fuzz Inc.', metadata: { k: 'v' } }),
  'POST /api/model-groups/create': () => ({ group_name: unique(), display_name: 'Fuzz', description: 'd', models: [{ model_name: 'sim-small', priority: 0 }] }),
  'PUT /api/model-groups/{group_name}': () => ({ display_name: 'Fuzz', description: 'd', models: [{ model_name: 'sim-small', priority: 0 }] }),
  'POST /api/teams/create': () => ({ organization_id: decoy.organizationId, team_id: unique(), team_alias: 'a', model_groups: [decoy.group], credits_allocated: 1, metadata: { k: 'v' } }),
  'POST /api/teams/{team_id}/keys': () => ({ name: 'fuzz key' }),
  'POST /api/credits/teams/{team_id}/add': () => ({ credits: 1, reason: 'fuzz' }),
  'PATCH /api/credits/teams/{team_id}/budget-mode': () => ({ budget_mode: 'job_based', credits_per_job: 1 }),
  'PUT /api/model-prices/{model_name}': () => ({ input_usd_per_million: '1.5', output_usd_per_million: 2 }),
  'POST /api/jobs/create': () => ({ team_id: team.teamId, job_type: 'fuzz', user_id: 'u', metadata: { k: 'v' } }),
  'POST /api/jobs/{job_id}/llm-call': () => ({ messages: chat(), user: 'u' }),
  'POST /api/jobs/{job_id}/llm-call-stream': () => ({ messages: chat(), user: 'u' }),
  'POST /api/jobs/{job_id}/complete': () => ({ status: 'failed', metadata: { k: 'v' }, error_message: 'e' }),
  'POST /api/jobs/create-and-call': () => ({ team_id: team.teamId, job_type: 'fuzz', user_id: 'u', job_metadata: { k: 'v' }, model: team.group, messages: chat() }),
  'POST /api/jobs/create-and-call-stream': () => ({ team_id: team.teamId, job_type: 'fuzz', user_id: 'u', job_metadata: { k: 'v' }, model: team.group, messages: chat() }),
  'POST /api/llm/complete': () => ({ model: team.group, messages: chat(), provider: 'p' }),
  'POST /api/llm/queue/stream': () => ({ queueId: `q_${'a'.repeat(21)}` }),
  'POST /api/llm/queue/cancel': () => ({ queueId: `q_${'a'.repeat(21)}` }),
  'POST /v1/chat/completions': () => ({ model: team.group, messages: chat(), user: 'u' }),
};

const routeKey = (route: RouteSpec) => `${route.method.toUpperCase()} ${route.path}`;

type FieldPath = (string | number)[];

/** Where a hostile value goes: each field of the valid body, and the string fields nested in messages, metadata and models. */
function fieldPaths(base: Record<string, unknown>): FieldPath[] {
  const paths: FieldPath[] = [];
  for (const [key, value] of Object.entries(base)) {
    paths.push([key]);
    if (key === 'messages') paths.push([key, 0, 'content'], [key, 0, 'role'], [key, 0, 'name'], [key, 0, 'content', 0, 'text'], [key, 0, 'tool_calls']);
    else if (key === 'models') paths.push([key, 0, 'model_name'], [key, 0, 'priority']);
    else if (value && typeof value === 'object' && !Array.isArray(value)) paths.push([key, 'k'], [key, '__proto__']);
  }
  paths.push(['unknown_parameter']);
  return paths;
}

const PLACEHOLDER = '__hostile_fragment__';

/** The valid body as JSON text with the value at `path` replaced by the raw JSON `fragment`. */
function renderWith(base: Record<string, unknown>, path: FieldPath, fragment: string): string {
  const body: any = structuredClone(base);
  let target: any = body;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    const next = path[i + 1]!;
    if (key === 'content' && typeof target[key] === 'string') target[key] = [{ type: 'text', text: 'hi' }];
    target[key] ??= typeof next === 'number' ? [] : {};
    target = target[key];
  }
  // Assigned as an own property, even for "__proto__".
  Object.defineProperty(target, path.at(-1)!, { value: PLACEHOLDER, enumerable: true, configurable: true, writable: true });
  return JSON.stringify(body).replace(JSON.stringify(PLACEHOLDER), fragment);
}

const deepObject = (depth: number) => `${'{"n":'.repeat(depth)}"leaf"${'}'.repeat(depth)}`;
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** Raw JSON values that break naive storage or serialisation; every one must be refused or handled, never a 500. */
const CRITICAL_FRAGMENTS: { name: string; json: string }[] = [
  { name: 'a NUL character', json: '"a\\u0000b"' },
  { name: 'a lone surrogate', json: '"x\\ud800y"' },
  { name: '10k-deep object', json: deepObject(10_000) },
  { name: '300 kB string', json: JSON.stringify('ü'.repeat(150_000)) },
];

const fragment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...CRITICAL_FRAGMENTS.map((f) => f.json)) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '"\\u0000"',
      '"\\udfff"',
      '"\\ud83d\\ude00"',
      '""',
      '"   "',
      '1e400',
      '-1',
      '0',
      '1.5',
      '9007199254740993',
      'null',
      'true',
      '[]',
      '{}',
      '[null]',
      '{"__proto__":{"admin":true}}',
      deepArray(10_000),
      deepObject(1_000),
      '"\\u202e\\u200b"',
      '"%s%n%x"',
      '"\' OR 1=1 --"',
      JSON.stringify('x'.repeat(5_000)),
    ),
  },
  { weight: 4, arbitrary: hostileValue.map(jsonText) },
);

/** A valid body of the route with one field made hostile, or undefined for routes without a known valid body. */
function mutatedBody(route: RouteSpec): fc.Arbitrary<string> | undefined {
  const base = VALID_BODIES[routeKey(route)];
  if (!base) return undefined;
  return fc.tuple(fc.constantFrom(...fieldPaths(base())), fragment).map(([path, json]) => renderWith(base(), path, json));
}

function requestArbitrary(route: RouteSpec): fc.Arbitrary<HostileRequest> {
  const params = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  return fc
    .record({
      pathValues: fc.tuple(...params.map(() => pathValue(route))),
      query: queryArbitrary(route),
      body: bodyArbitrary(route),
      authorization: authorization(route),
      contentType,
      idempotencyKey: fc.option(
        fc.oneof(shortString.map(headerSafe), fc.constantFrom('', ' ', 'k'.repeat(256), 'k'.repeat(10_000), 'clé-ÿ', 'same-key', 'a b', '\tk\t')),
        { freq: 3 },
      ),
      contentEncoding: fc.option(fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'bogus'), { freq: 10 }),
      requestId: fc.option(shortString.map(headerSafe), { freq: 5 }),
      invalidUtf8: fc.boolean(),
    })
    .map(({ pathValues, query: search, body, authorization: auth, contentType: type, idempotencyKey, contentEncoding, requestId, invalidUtf8 }) => {
      let path = route.path;
      params.forEach((name, i) => (path = path.replace(`{${name}}`, pathValues[i]!)));
      const headers: Record<string, string> = {};
      if (auth !== undefined) headers.authorization = auth;
      if (type !== undefined) headers['content-type'] = type;
      if (idempotencyKey !== null) headers['idempotency-key'] = idempotencyKey;
      if (contentEncoding !== null) headers['content-encoding'] = contentEncoding;
      if (requestId !== null) headers['x-request-id'] = requestId;
      const sendsBody = route.method !== 'get' && body !== undefined;
      const bytes = sendsBody && invalidUtf8 ? new Uint8Array([...Buffer.from(body!), 0xc3, 0x28, 0xff, 0xfe]) : undefined;
      return printable({ method: route.method.toUpperCase(), path: path + search, headers, ...(sendsBody && { body: bytes ?? body }) });
    });
}

/** Fixed payloads too big or too deep for the generators, sent to every route that takes a body. */
function fixedBodies(): { name: string; body: string | Uint8Array; headers?: Record<string, string> }[] {
  return [
    { name: 'over the body limit', body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(1_100_000) }] }) },
    { name: 'just under the body limit', body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(1_000_000) }], team_id: 'x'.repeat(20_000) }) },
    { name: '100k nested arrays', body: deepArray(100_000) },
    { name: '50k nested objects', body: deepObject(50_000) },
    { name: '100k-key object', body: JSON.stringify(Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]))) },
    { name: '2001 messages', body: JSON.stringify({ messages: Array.from({ length: 2_001 }, () => ({ role: 'user', content: 'hi' })) }) },
    { name: 'prototype pollution', body: '{"__proto__":{"admin":true,"team_id":"x"},"constructor":{"prototype":{"polluted":true}}}' },
    { name: 'invalid UTF-8', body: new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x7d]) },
    { name: 'UTF-16 body', body: new Uint8Array(Buffer.from('{"a":1}', 'utf16le')), headers: { 'content-type': 'application/json; charset=utf-16' } },
    { name: 'gzip header on a plain body', body: '{"a":1}', headers: { 'content-encoding': 'gzip' } },
    { name: 'unknown content encoding', body: '{"a":1}', headers: { 'content-encoding': 'x-bogus' } },
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------------

interface Observed {
  status: number;
  contentType: string;
  text: string;
}

async function send(request: HostileRequest): Promise<Observed> {
  const response = await fetch(app.url + request.path, {
    method: request.method,
    headers: request.headers,
    ...(request.body !== undefined && { body: request.body }),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: await response.text() };
}

const describeRequest = (request: HostileRequest) =>
  `${request.method} ${request.path.slice(0, 300)} ${JSON.stringify(request.headers).slice(0, 300)} body=${
    request.body === undefined ? '-' : typeof request.body === 'string' ? request.body.slice(0, 300) : `<${request.body.length} bytes>`
  }`;

/** Waits for queued calls (the queue API answers before it runs them) so their ledger effects are not misattributed. */
async function quiesce(): Promise<void> {
  await poll(
    async () => {
      const [row] = await query(app, `SELECT count(*)::int AS n FROM queue_requests WHERE team_id = $1 AND status IN ('queued', 'processing')`, [team.teamId]);
      return row.n === 0 ? true : undefined;
    },
    10_000,
    'queued calls to finish',
    20,
  );
}

/** One request's broken promises; `kinds` are short labels to group the report by. */
class Violation extends Error {
  constructor(
    readonly kinds: string[],
    message: string,
  ) {
    super(message);
  }
}

/** Refused requests that still wrote (net-zero) hold/release entries, per route: reported, not failed. */
const refusalsWithLedgerEntries = new Map<string, number>();

async function checkOne(route: RouteSpec, request: HostileRequest, stats: Map<string, Map<number, number>>): Promise<void> {
  const before: LedgerState = await ledgerState(app, team.teamId);
  const answer = await send(request);
  const key = routeKey(route);
  const what = `${key}: ${answer.status} ${answer.text.slice(0, 200)}\n    for ${describeRequest(request)}`;
  const byStatus = stats.get(key) ?? new Map<number, number>();
  byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
  stats.set(key, byStatus);

  const kinds: string[] = [];
  const ok = answer.status >= 200 && answer.status < 300;
  if (answer.status >= 500) kinds.push(`HTTP ${answer.status}`);
  if (!ok) {
    if (!answer.contentType.includes('application/json')) kinds.push(`non-JSON error (${answer.contentType || 'no content type'})`);
    else if (!isErrorShape(safeJson(answer.text))) kinds.push('error without the error shape');
  } else if (answer.contentType.includes('application/json')) {
    if (safeJson(answer.text) === undefined) kinds.push('unparseable JSON success');
  } else {
    const expected = route.response.contentType ?? (route.path === '/metrics' ? 'text/plain' : 'application/json');
    if (!answer.contentType.includes(expected.split(';')[0]!)) kinds.push(`success as ${answer.contentType}`);
  }

  if (ok && request.method !== 'GET') await quiesce();
  const after = await ledgerState(app, team.teamId);
  if (!ok) {
    if (after.balanceMicro !== before.balanceMicro || after.heldMicro !== before.heldMicro) kinds.push('money moved on a refusal');
    const moved = Object.keys({ ...before.entries, ...after.entries }).filter((type) => (after.entries[type] ?? 0) !== (before.entries[type] ?? 0));
    if (moved.some((type) => type !== 'hold' && type !== 'release')) kinds.push(`ledger ${moved.join('/')} entries written on a refusal`);
    else if (moved.length > 0) refusalsWithLedgerEntries.set(key, (refusalsWithLedgerEntries.get(key) ?? 0) + 1);
  }
  if (kinds.length > 0) throw new Violation(kinds, `${kinds.join(', ')}: ${what}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------------

describe('hostile input on every route', () => {
  it('never answers 5xx or a non-contract error, never moves money on a refusal, and the process survives', async () => {
    const stats = new Map<string, Map<number, number>>();
    // Every route is tried even after another one failed; all problems are reported together at the end.
    const problems: string[] = [];
    let runs = 0;

    // Deterministic findings are grouped: "HTTP 500 | a NUL character | POST /api/jobs/create" -> field paths.
    const grouped = new Map<string, { where: string[]; example: string }>();
    const record = (label: string, where: string, error: unknown) => {
      if (!(error instanceof Violation)) throw error;
      const key = `${error.kinds.join(', ')} | ${label} | ${error.message.split(':')[1]?.trim() ?? ''}`;
      const entry = grouped.get(key) ?? { where: [], example: error.message.split('\n').slice(0, 2).join('\n') };
      entry.where.push(where);
      grouped.set(key, entry);
    };
    const pathFor = async (route: RouteSpec) => {
      let path = route.path;
      for (const [, name] of route.path.matchAll(/\{(\w+)\}/g)) {
        const value =
          name === 'job_id' ? await newJob()
          : name === 'team_id' ? (route.auth === 'admin' ? decoy.teamId : team.teamId)
          : name === 'group_name' ? decoy.group
          : name === 'organization_id' ? decoy.organizationId
          : name === 'model_name' ? 'fuzz-model'
          : 'x';
        path = path.replace(`{${name}}`, value);
      }
      return path;
    };
    const credentials = (route: RouteSpec): Record<string, string> =>
      route.auth === 'public' ? {} : { authorization: `Bearer ${route.auth === 'admin' ? TEST_MASTER_KEY : team.key}` };

    const phaseStart = Date.now();
    // 1a. Fixed oversized and deeply nested payloads, on every route that takes a body.
    const fixed = fixedBodies();
    for (const route of allRoutes.filter((r) => r.body)) {
      for (const payload of fixed) {
        const headers = { 'content-type': 'application/json', ...credentials(route), ...payload.headers };
        runs++;
        await checkOne(route, { method: route.method.toUpperCase(), path: await pathFor(route), headers, body: payload.body }, stats).catch((error) =>
          record(payload.name, 'body', error),
        );
      }
    }

    const phase1aMs = Date.now() - phaseStart;
    // 1b. Each field of a valid body replaced by each critical value.
    for (const route of allRoutes) {
      const base = VALID_BODIES[routeKey(route)];
      if (!base) continue;
      for (const path of fieldPaths(base())) {
        for (const critical of CRITICAL_FRAGMENTS) {
          // The request fingerprint of an Idempotency-Key walks the whole body too: deep bodies are sent with one.
          for (const idempotent of route.idempotent && critical.name.includes('deep') ? [false, true] : [false]) {
            const headers: Record<string, string> = { 'content-type': 'application/json', ...credentials(route) };
            if (idempotent) headers['idempotency-key'] = unique();
            runs++;
            await checkOne(route, { method: route.method.toUpperCase(), path: await pathFor(route), headers, body: renderWith(base(), path, critical.json) }, stats).catch(
              (error) => record(critical.name, `${path.join('.')}${idempotent ? ' (with Idempotency-Key)' : ''}`, error),
            );
          }
        }
      }
    }

    const phase1bMs = Date.now() - phaseStart - phase1aMs;
    for (const [key, { where, example }] of grouped) {
      problems.push(`${key}\n    in: ${[...new Set(where)].join('; ')}\n    e.g. ${example.split('\n')[1]?.trim().slice(0, 400)}`);
    }

    // 2. Generated requests, route by route, within the time budget; a failure is shrunk, recorded, and the
    //    next route goes on.
    const generatedFrom = Date.now();
    for (const [index, route] of allRoutes.entries()) {
      const remaining = PROPERTY_BUDGET_MS - (Date.now() - generatedFrom);
      const share = Math.max(500, remaining / (allRoutes.length - index));
      try {
        await fc.assert(
          fc.asyncProperty(requestArbitrary(route), async (request) => {
            runs++;
            await checkOne(route, request, stats);
          }),
          { numRuns: RUNS_PER_ROUTE, plugins: [fc.interruptAfterTimeLimit(share)], ...(process.env.FC_SEED && { seed: Number(process.env.FC_SEED) }) },
        );
      } catch (error) {
        const message = (error as Error).message;
        // The route's time share ran out before its first request answered (a loaded machine): one request, without
        // a time limit, so every route still gets a generated one; its failure is a problem like any other.
        if (/interrupted after 0 tests/.test(message)) {
          const [request] = fc.sample(requestArbitrary(route), 1);
          runs++;
          await checkOne(route, request!, stats).catch((failure: unknown) => problems.push(`[generated, one request] ${route.method} ${route.path}: ${String(failure).slice(0, 400)}`));
          continue;
        }
        const cause = (error as Error).cause instanceof Error ? `\n  ${((error as Error).cause as Error).message.split('\n').slice(0, 2).join('\n  ')}` : '';
        problems.push(`[generated] ${message.split('\n').filter((line) => !line.startsWith('Hint') && line.trim()).slice(0, 6).join('\n')}${cause}`);
      }
    }
    // Soft: the coverage and liveness checks below still run when problems were found.
    expect.soft(problems.length, `${problems.length} problems:\n\n${problems.join('\n\n')}\n`).toBe(0);
    expect(runs, 'enough requests were sent').toBeGreaterThan(allRoutes.length * 20);
    // Every authenticated route was really exercised past authentication (its parsing and handler ran).
    for (const route of allRoutes) {
      const byStatus = stats.get(`${route.method.toUpperCase()} ${route.path}`);
      expect(byStatus, `${route.path} was exercised`).toBeDefined();
      const pastAuth = [...byStatus!.entries()].filter(([status]) => status !== 401 && status !== 403).reduce((n, [, count]) => n + count, 0);
      expect(pastAuth, `${route.method.toUpperCase()} ${route.path} got past authentication`).toBeGreaterThan(0);
    }
    if (process.env.RELIABILITY_VERBOSE) {
      process.stdout.write(`phase 1a ${phase1aMs} ms, phase 1b ${phase1bMs} ms, generated ${Date.now() - generatedFrom} ms, ${runs} requests\n`);
      for (const [key, byStatus] of stats) process.stdout.write(`${key} ${JSON.stringify(Object.fromEntries(byStatus))}\n`);
      for (const [key, n] of refusalsWithLedgerEntries) process.stdout.write(`refused but wrote net-zero hold/release entries: ${key} x${n}\n`);
    }

    // 3. The process is alive and well, and the fixture team's books balance.
    expect((await app.request('GET', '/health', { token: null })).status).toBe(200);
    expect((await app.request('GET', '/ready', { token: null })).status).toBe(200);
    expect((await app.request('GET', `/api/credits/teams/${team.teamId}/balance`, { token: team.key })).status).toBe(200);
    await expectLedgerConsistent(app, team.teamId, { jobs: true });
  });
});
