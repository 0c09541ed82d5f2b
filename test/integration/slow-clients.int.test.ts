import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_MASTER_KEY, createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { poll } from '../helpers/wait.js';

/**
 * Slow and hostile connections cannot take an instance from other clients: one address may hold only so many
 * connections that never carried an authenticated request (MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS), a request
 * is authenticated from its headers before it takes an in-flight slot or has its body read, and the headers and the
 * whole request must arrive within HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS. Every local address in 127.0.0.0/8
 * reaches the app on 127.0.0.1, so one test plays an attacker (127.0.0.3) and honest clients (127.0.0.2) at once.
 */

const ATTACKER = '127.0.0.3';
const CLIENT = '127.0.0.2';

const portOf = (app: TestApp) => Number(new URL(app.url).port);

/** A raw TCP connection from `localAddress`, and everything that happened to it. */
interface RawConnection {
  socket: Socket;
  openedAt: number;
  /** Everything the server sent, as latin1 text. */
  received: string;
  /** Date.now() when the server's first bytes arrived. */
  firstByteAt: number | undefined;
  /** Date.now() when the connection closed (either side), undefined while it is open. */
  closedAt: number | undefined;
  closed: Promise<void>;
}

function rawConnection(app: TestApp, localAddress: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: portOf(app), localAddress });
    let markClosed!: () => void;
    const connection: RawConnection = {
      socket,
      openedAt: Date.now(),
      received: '',
      firstByteAt: undefined,
      closedAt: undefined,
      closed: new Promise<void>((done) => (markClosed = done)),
    };
    socket.setNoDelay(true);
    socket.on('data', (data) => {
      connection.firstByteAt ??= Date.now();
      connection.received += data.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      connection.closedAt = Date.now();
      markClosed();
    });
    socket.once('connect', () => resolve(connection));
    socket.once('error', reject);
  });
}

/** The status of the first response the server sent on a raw connection, once its head arrived. */
async function rawStatus(connection: RawConnection, timeoutMs = 5_000): Promise<number> {
  return poll(
    async () => {
      const match = /^HTTP\/1\.1 (\d{3}) /.exec(connection.received);
      if (match && connection.received.includes('\r\n\r\n')) return Number(match[1]);
      if (connection.closedAt !== undefined) throw new Error(`connection closed without a response (received ${JSON.stringify(connection.received)})`);
      return undefined;
    },
    timeoutMs,
    'a response on a raw connection',
    10,
  );
}

/** Whether the connection closed within `timeoutMs` (at once if it already had). */
async function closedWithin(connection: RawConnection, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  const result = await Promise.race([connection.closed.then(() => true as const), timedOut]);
  clearTimeout(timer);
  return result;
}

const authenticatedGet = (path: string, token = TEST_MASTER_KEY) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`;

/** A request through node:http from `localAddress` on a connection of its own: status, body and time taken. */
function requestFrom(
  app: TestApp,
  localAddress: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: string; elapsedMs: number }> {
  const startedAt = performance.now();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: portOf(app),
        localAddress,
        method,
        path,
        agent: false,
        timeout: 10_000,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload !== undefined && { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, elapsedMs: Math.round(performance.now() - startedAt) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} from ${localAddress} got no answer in 10 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const opened: RawConnection[] = [];
async function open(app: TestApp, localAddress: string): Promise<RawConnection> {
  const connection = await rawConnection(app, localAddress);
  opened.push(connection);
  return connection;
}
function closeAll(): void {
  for (const connection of opened.splice(0)) connection.socket.destroy();
}

describe('unauthenticated connections per client address', () => {
  let app: TestApp;
  let team: TeamSetup;
  beforeAll(async () => {
    app = await createTestApp({ MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: '20', MAX_INFLIGHT_REQUESTS: '20' });
    team = await setupTeam(app);
  });
  afterAll(async () => {
    closeAll();
    await app?.close();
  });

  it('the 21st connection of an address that authenticated none is closed at once; other addresses, and connections that authenticate, are served', async () => {
    const idle: RawConnection[] = [];
    for (let i = 0; i < 20; i++) idle.push(await open(app, ATTACKER));

    // One more from the same address: closed at once, without a byte.
    const over = await open(app, ATTACKER);
    expect(await closedWithin(over, 2_000), 'the 21st connection is closed').toBe(true);
    expect(over.received).toBe('');
    expect(over.closedAt! - over.openedAt).toBeLessThan(1_000);
    expect(idle.filter((connection) => connection.closedAt !== undefined), 'the 20 under the cap stay open').toEqual([]);

    // Another address is served at once, with its own cap.
    const other = await requestFrom(app, CLIENT, 'GET', `/api/teams/${team.teamId}`, TEST_MASTER_KEY);
    expect(other.status, other.body).toBe(200);
    expect(JSON.parse(other.body).team_id).toBe(team.teamId);

    // A request with a wrong key does not release its connection: the address is still at its cap.
    idle[0]!.socket.write(authenticatedGet(`/api/teams/${team.teamId}`, 'sk-not-a-real-key-000000000000000'));
    expect(await rawStatus(idle[0]!)).toBe(401);
    const stillOver = await open(app, ATTACKER);
    expect(await closedWithin(stillOver, 2_000), 'a 401 does not free a place').toBe(true);
    expect(stillOver.received).toBe('');

    // A connection that carried an authenticated request no longer counts: exactly one more place.
    idle[1]!.socket.write(authenticatedGet(`/api/teams/${team.teamId}`));
    expect(await rawStatus(idle[1]!)).toBe(200);
    const freed = await open(app, ATTACKER);
    const overAgain = await open(app, ATTACKER);
    expect(await closedWithin(overAgain, 2_000), 'only one place was freed').toBe(true);
    expect(freed.closedAt, 'the connection in the freed place is kept').toBeUndefined();
    freed.socket.write(authenticatedGet(`/api/teams/${team.teamId}`, team.key));
    expect(await rawStatus(freed)).toBe(200);
    // The team key authenticates too (freed's request counted as authenticated and released its place).
    const afterTeamKey = await open(app, ATTACKER);
    afterTeamKey.socket.write(authenticatedGet(`/api/teams/${team.teamId}`, team.key));
    expect(await rawStatus(afterTeamKey)).toBe(200);

    // Once the address's connections are gone, it may connect again.
    closeAll();
    const again = await poll(
      async () => {
        const connection = await open(app, ATTACKER);
        connection.socket.write(authenticatedGet(`/api/teams/${team.teamId}`));
        const answered = await rawStatus(connection).catch(() => undefined);
        return answered;
      },
      5_000,
      'the address to be served again once its connections closed',
    );
    expect(again).toBe(200);
  });
});

describe('a flood of slow bodies without a key', () => {
  let app: TestApp;
  let team: TeamSetup;
  beforeAll(async () => {
    // The per-address cap is out of the way here: what is tested is that no slot is taken before authentication.
    app = await createTestApp({ MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: '1000', MAX_INFLIGHT_REQUESTS: '20' });
    team = await setupTeam(app, { credits: 100 });
  });
  afterAll(async () => {
    closeAll();
    await app?.close();
  });

  it('300 connections sending headers without Authorization and 1 byte of a 100-byte body get 401 at once, and authenticated clients are served promptly meanwhile', async () => {
    const flood = await Promise.all(Array.from({ length: 300 }, () => open(app, ATTACKER)));
    const sentAt = Date.now();
    for (const connection of flood) {
      connection.socket.write(
        `POST /api/jobs/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
      );
    }
    // Each is refused from its headers alone: its body (99 bytes still to come) is never waited for.
    const statuses = await Promise.all(flood.map((connection) => rawStatus(connection, 10_000)));
    expect(new Set(statuses)).toEqual(new Set([401]));
    const slowest = Math.max(...flood.map((connection) => connection.firstByteAt! - sentAt));
    expect(slowest, 'every 401 came without waiting for the body').toBeLessThan(5_000);
    for (const connection of flood) expect(connection.received).toContain('invalid_api_key');
    const stillOpen = flood.filter((connection) => connection.closedAt === undefined).length;

    // With the flood connected, authenticated clients from another address are served at once, 10 at a time,
    // though the instance takes only 20 requests in flight.
    const served = await Promise.all([
      ...Array.from({ length: 5 }, () => requestFrom(app, CLIENT, 'GET', `/api/teams/${team.teamId}`, TEST_MASTER_KEY)),
      ...Array.from({ length: 5 }, () => requestFrom(app, CLIENT, 'POST', '/api/jobs/create', team.key, { team_id: team.teamId, job_type: 'honest' })),
    ]);
    for (const response of served.slice(0, 5)) expect(response.status, response.body).toBe(200);
    for (const response of served.slice(5)) expect(response.status, response.body).toBe(201);
    for (const response of served) expect(response.elapsedMs, 'served promptly').toBeLessThan(3_000);
    // A model call too, end to end.
    const call = await requestFrom(app, CLIENT, 'POST', '/api/jobs/create-and-call', team.key, {
      team_id: team.teamId,
      job_type: 'honest',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    expect(call.status, call.body).toBe(201);
    expect(call.elapsedMs).toBeLessThan(3_000);
    // The flood was still connected while they were served (their bodies never finished).
    expect(stillOpen, 'flood connections still open while the honest clients were served').toBeGreaterThan(0);
  });
});

describe('header and body timeouts', () => {
  let app: TestApp;
  let team: TeamSetup;
  beforeAll(async () => {
    app = await createTestApp({ HEADERS_TIMEOUT_MS: '500', REQUEST_TIMEOUT_MS: '800' });
    team = await setupTeam(app);
  });
  afterAll(async () => {
    closeAll();
    await app?.close();
  });

  it('a client that sends half its headers is disconnected soon after HEADERS_TIMEOUT_MS', async () => {
    const slow = await open(app, ATTACKER);
    slow.socket.write(`GET /api/teams/${team.teamId} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    // A client that sends its headers in time is served meanwhile.
    const prompt = await open(app, CLIENT);
    prompt.socket.write(authenticatedGet(`/api/teams/${team.teamId}`));
    expect(await rawStatus(prompt)).toBe(200);

    expect(await closedWithin(slow, 5_000), 'the half-sent headers connection is closed within 5 s').toBe(true);
    const after = slow.closedAt! - slow.openedAt;
    expect(after).toBeGreaterThanOrEqual(400);
    expect(after, 'closed soon after the 500 ms headers timeout').toBeLessThan(3_000);
    // A plain close, or a 408; never a request served nor a misleading "malformed" 400.
    if (slow.received !== '') expect(slow.received.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  });

  it('an authenticated request whose body never finishes gets 408 (or its connection closed) after about REQUEST_TIMEOUT_MS', async () => {
    const slow = await open(app, CLIENT);
    slow.socket.write(
      `POST /api/jobs/create HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${team.key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"team_id":`,
    );
    expect(await closedWithin(slow, 5_000), 'the connection of the unfinished body is closed within 5 s').toBe(true);
    const after = slow.closedAt! - slow.openedAt;
    expect(after).toBeGreaterThanOrEqual(600);
    expect(after, 'ended soon after the 800 ms request timeout').toBeLessThan(3_000);
    // Either a plain close or a 408; never a request treated as complete nor a misleading "malformed" 400.
    if (slow.received !== '') expect(slow.received.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
    // Nothing was created from the partial body.
    expect(await query(app, 'SELECT id FROM jobs WHERE team_id = $1', [team.teamId])).toEqual([]);
  });
});

describe('slow bodies with a valid team key', () => {
  let app: TestApp;
  let slowTeam: TeamSetup;
  let otherTeam: TeamSetup;
  beforeAll(async () => {
    // One unauthenticated connection per address: the test knows each slow request was authenticated (and, before
    // bodies were read ahead of the slot, would have taken a slot) when its address may open the next connection.
    app = await createTestApp({ MAX_INFLIGHT_REQUESTS: '50', MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: '1' });
    slowTeam = await setupTeam(app, { credits: 100 });
    otherTeam = await setupTeam(app, { credits: 100 });
  });
  afterAll(async () => {
    closeAll();
    await app?.close();
  });

  /** A connection from `address` that the server keeps, once the address's previous one was authenticated. */
  const keptConnection = (address: string) =>
    poll(
      async () => {
        const connection = await open(app, address);
        return (await closedWithin(connection, 100)) ? undefined : connection;
      },
      5_000,
      `a connection from ${address} to be kept`,
    );

  it("60 bodies that never finish, sent with one team's key, take none of the 50 in-flight slots: another team's models and chat are answered", async () => {
    const slow: RawConnection[] = [];
    for (let i = 0; i < 60; i++) {
      const connection = await keptConnection(ATTACKER);
      connection.socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${slowTeam.key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
      );
      slow.push(connection);
    }
    // The 60th slow request was authenticated too.
    await keptConnection(ATTACKER);

    const models = await requestFrom(app, CLIENT, 'GET', '/v1/models', otherTeam.key);
    expect(models.status, models.body).toBe(200);
    expect(JSON.parse(models.body).data.map((model: { id: string }) => model.id)).toContain(otherTeam.group);
    const chat = await requestFrom(app, CLIENT, 'POST', '/v1/chat/completions', otherTeam.key, {
      model: otherTeam.group,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    expect(chat.status, chat.body).toBe(200);
    expect(JSON.parse(chat.body).object).toBe('chat.completion');
    // The slow team itself is served too, on a request whose body arrives.
    const own = await requestFrom(app, CLIENT, 'GET', '/v1/models', slowTeam.key);
    expect(own.status, own.body).toBe(200);

    // The slow bodies were still unfinished and unanswered meanwhile.
    expect(slow.filter((connection) => connection.closedAt !== undefined || connection.received !== '')).toEqual([]);
  });
});
