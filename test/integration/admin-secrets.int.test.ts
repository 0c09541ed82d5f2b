import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER } from '../../src/db/client.js';
import { JWT_SECRET_FILE } from '../../src/domain/admin/instance-secrets.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createOrganization, uniqueId } from '../helpers/factories.js';
import { poolOf } from '../helpers/postgres.js';

/**
 * Secrets at rest (issue 13, item 6): nothing in the database signs admin tokens. The key comes from
 * JWT_SECRET, is derived from MASTER_KEY, or (a generated master key) sits in a 0600 file under DATA_DIR.
 */
const PASSWORD = 'a long enough admin password';
const dataDirs: string[] = [];
afterAll(async () => {
  for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
});

async function newDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'creditgate-secrets-'));
  dataDirs.push(dir);
  return dir;
}

/** An admin user created with `adminCredential`, logged in on `app`; returns its id and token. */
async function adminToken(app: TestApp, adminCredential?: string): Promise<{ id: string; token: string }> {
  const email = `${uniqueId('ops')}@example.com`;
  const created = await app.request('POST', '/api/admin-users/create', { body: { email, password: PASSWORD }, ...(adminCredential && { token: adminCredential }) });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const login = await app.request('POST', '/api/admin-users/login', { token: null, body: { email, password: PASSWORD } });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  return { id: created.body.admin_user_id, token: login.body.access_token };
}

const whoAmI = (app: TestApp, token: string) => app.request('GET', '/api/admin-users/me', { token });

function signAs(secret: Uint8Array, subject: string): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(subject).setIssuer('creditgate').setAudience('creditgate-admin').setIssuedAt().setExpirationTime('1h').sign(secret);
}

/** Every text value in the database's tables, read as an attacker with a dump would, in each plausible encoding. */
async function candidateKeysFromDatabase(app: TestApp): Promise<Uint8Array[]> {
  const pool = poolOf(app);
  const columns = (
    await pool.query<{ table_name: string; column_name: string }>(
      `SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type IN ('text', 'character varying') AND table_name IN ('instance_secrets', 'admin_users')`,
    )
  ).rows;
  const values = new Set<string>();
  for (const { table_name, column_name } of columns) {
    for (const row of (await pool.query(`SELECT "${column_name}"::text AS value FROM "${table_name}"`)).rows) {
      if (row.value) values.add(row.value as string);
    }
  }
  const keys: Uint8Array[] = [];
  for (const value of values) {
    keys.push(new TextEncoder().encode(value));
    if (/^[0-9a-f]+$/i.test(value) && value.length % 2 === 0) keys.push(Buffer.from(value, 'hex'));
    if (/^[\w-]+$/.test(value)) keys.push(Buffer.from(value, 'base64url'));
  }
  return keys;
}

describe('with MASTER_KEY in the environment (the test default)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(() => app?.close());

  it('stores no JWT secret, and a token signed with anything the database holds is refused', async () => {
    const admin = await adminToken(app);
    expect((await whoAmI(app, admin.token)).status).toBe(200);
    const stored = await poolOf(app).query<{ name: string }>('SELECT name FROM instance_secrets');
    expect(stored.rows.map((row) => row.name)).not.toContain('jwt_secret');
    expect(app.deps.adminAuth.secrets.jwtSecretSource).toBe('master_key');

    const candidates = await candidateKeysFromDatabase(app);
    expect(candidates.length).toBeGreaterThan(0);
    for (const key of candidates) {
      const forged = await whoAmI(app, await signAs(key, admin.id));
      expect(forged.status, `a token signed with ${Buffer.from(key).toString('utf8').slice(0, 24)}... was accepted`).toBe(401);
    }
  });

  it("instances given the same MASTER_KEY accept each other's tokens; one with another MASTER_KEY does not", async () => {
    const twin = await createTestApp({ DATABASE_URL: app.databaseUrl });
    const stranger = await createTestApp({ DATABASE_URL: app.databaseUrl, MASTER_KEY: 'mk-another-master-key-9876543210' });
    try {
      const fromApp = await adminToken(app);
      const fromTwin = await adminToken(twin);
      expect((await whoAmI(twin, fromApp.token)).body).toMatchObject({ kind: 'admin_user', admin_user: { admin_user_id: fromApp.id } });
      expect((await whoAmI(app, fromTwin.token)).body).toMatchObject({ kind: 'admin_user', admin_user: { admin_user_id: fromTwin.id } });
      expect((await whoAmI(stranger, fromApp.token)).status).toBe(401);
    } finally {
      await stranger.close();
      await twin.close();
    }
  });

  it('JWT_SECRET in the environment wins over the master key', async () => {
    const jwtSecret = 'an operator chosen secret of at least 32 characters';
    const configured = await createTestApp({ DATABASE_URL: app.databaseUrl, JWT_SECRET: jwtSecret });
    try {
      expect(configured.deps.adminAuth.secrets.jwtSecretSource).toBe('environment');
      const { id, token } = await adminToken(configured);
      expect((await whoAmI(configured, await signAs(new TextEncoder().encode(jwtSecret), id))).status).toBe(200);
      expect((await whoAmI(app, token)).status).toBe(401);
    } finally {
      await configured.close();
    }
  });
});

describe('answers kept for an Idempotency-Key replay', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(() => app?.close());

  /** Sends `body` twice with one Idempotency-Key; returns both answers and the row the replay was read from. */
  async function createTwice(path: string, body: unknown) {
    const headers = { 'idempotency-key': uniqueId('create') };
    const first = await app.request('POST', path, { body, headers });
    const replay = await app.request('POST', path, { body, headers });
    const stored = await poolOf(app).query<{ kept: string }>('SELECT response_body::text AS kept FROM idempotency_keys WHERE key = $1', [headers['idempotency-key']]);
    return { first, replay, kept: stored.rows[0]!.kept };
  }

  it('replay the secret of a new team, key or webhook endpoint, which the idempotency table holds only sealed', async () => {
    const organization = await createOrganization(app);
    const team = await createTwice('/api/teams/create', { organization_id: organization, team_id: uniqueId('team') });
    const key = await createTwice(`/api/teams/${team.first.body.team_id}/keys`, { name: 'ci' });
    const endpoint = await createTwice('/api/webhooks/endpoints', { url: 'https://receiver.example/hooks' });
    for (const [created, secret] of [
      [team, team.first.body.virtual_key],
      [key, key.first.body.virtual_key],
      [endpoint, endpoint.first.body.secret],
    ] as const) {
      expect(created.first.status, JSON.stringify(created.first.body)).toBe(201);
      expect(secret).toMatch(/^(sk-|whsec_)/);
      expect(created.replay.status).toBe(201);
      expect(created.replay.headers.get('idempotent-replayed')).toBe('true');
      expect(created.replay.body).toEqual(created.first.body);
      expect(created.kept).toMatch(/^\{"sealed": "v1:/);
      expect(created.kept).not.toContain(secret);
    }
    // An answer kept without a secret is stored as it is.
    const organizationAnswer = await createTwice('/api/organizations/create', { organization_id: uniqueId('org'), name: 'plain' });
    expect(JSON.parse(organizationAnswer.kept)).toEqual(organizationAnswer.first.body);
  });

  it('an instance with another secret cannot open a sealed answer: 409, and nothing is created twice', async () => {
    const organization = await createOrganization(app);
    const body = { organization_id: organization, team_id: uniqueId('team') };
    const headers = { 'idempotency-key': uniqueId('create') };
    expect((await app.request('POST', '/api/teams/create', { body, headers })).status).toBe(201);
    const stranger = await createTestApp({ DATABASE_URL: app.databaseUrl, MASTER_KEY: 'mk-another-master-key-9876543210' });
    try {
      const replay = await stranger.request('POST', '/api/teams/create', { body, headers, token: 'mk-another-master-key-9876543210' });
      expect(replay.status, JSON.stringify(replay.body)).toBe(409);
      expect(replay.body.error).toMatchObject({ code: 'idempotency_answer_unreadable' });
      const keys = await poolOf(app).query('SELECT 1 FROM api_keys WHERE team_id = $1', [body.team_id]);
      expect(keys.rowCount).toBe(1);
    } finally {
      await stranger.close();
    }
  });
});

describe('with a generated master key (no MASTER_KEY, no JWT_SECRET)', () => {
  it('keeps the signing key in a 0600 file under DATA_DIR, used again after a restart and never stored in the database', async () => {
    const dataDir = await newDataDir();
    const first = await createTestApp({ MASTER_KEY: '', DATA_DIR: dataDir });
    const masterKey = first.deps.generatedMasterKey!;
    expect(masterKey).toMatch(/^mk-/);
    const admin = await adminToken(first, masterKey);
    expect(first.deps.adminAuth.secrets.jwtSecretSource).toBe('data_dir');
    const file = path.join(dataDir, JWT_SECRET_FILE);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file, 'utf8')).trim().length).toBeGreaterThanOrEqual(32);

    const stored = await poolOf(first).query<{ name: string }>('SELECT name FROM instance_secrets');
    expect(stored.rows.map((row) => row.name)).toEqual(['master_key_sha256']);
    for (const key of await candidateKeysFromDatabase(first)) expect((await whoAmI(first, await signAs(key, admin.id))).status).toBe(401);

    // Another process on the same DATA_DIR (a restart) signs with the same file; one with its own DATA_DIR does not.
    const sameDir = await createTestApp({ MASTER_KEY: '', DATA_DIR: dataDir, DATABASE_URL: first.databaseUrl });
    const otherDir = await createTestApp({ MASTER_KEY: '', DATA_DIR: await newDataDir(), DATABASE_URL: first.databaseUrl });
    try {
      expect(sameDir.deps.generatedMasterKey).toBeUndefined();
      expect((await whoAmI(sameDir, admin.token)).status).toBe(200);
      expect((await whoAmI(otherDir, admin.token)).status).toBe(401);
    } finally {
      await otherDir.close();
      await sameDir.close();
      await first.close();
    }
  });
});

describe('upgrading', () => {
  it('the migration deletes the JWT secret an earlier version kept in the database', async () => {
    const app = await createTestApp();
    try {
      const pool = poolOf(app);
      await pool.query(`INSERT INTO instance_secrets (name, value) VALUES ('jwt_secret', 'kept in plain text by earlier versions')`);
      await pool.query(await readFile(path.join(MIGRATIONS_FOLDER, '0010_jwt_secret_out_of_database.sql'), 'utf8'));
      expect((await pool.query(`SELECT name FROM instance_secrets WHERE name = 'jwt_secret'`)).rowCount).toBe(0);
    } finally {
      await app.close();
    }
  });
});
