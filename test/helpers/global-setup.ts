import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { connectDatabase, migrateDatabase } from '../../src/db/client.js';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { adminQuery, databaseUrl, uniqueDatabaseName } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresServerUrl: string;
    postgresTemplate: string;
  }
}

/**
 * One PostgreSQL server for the whole run: TEST_DATABASE_URL or DATABASE_URL when set, else a testcontainers
 * PostgreSQL when a Docker engine answers, else the embedded PostgreSQL from npm on a free port.
 * Migrations run once into a template database that every test file clones.
 */
async function startServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const configured = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (configured) return { url: configured, stop: async () => undefined };
  const { getContainerRuntimeClient } = await import('testcontainers');
  const dockerAnswers = await getContainerRuntimeClient().then(
    () => true,
    () => false,
  );
  if (dockerAnswers) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:16-alpine').start();
    return { url: container.getConnectionUri(), stop: async () => void (await container.stop()) };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'creditgate-test-pg-'));
  const embedded = await startEmbeddedPostgres({ dataDir, persistent: false });
  return {
    url: embedded.url,
    stop: async () => {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export default async function setup(project: TestProject) {
  const server = await startServer();
  const template = uniqueDatabaseName('cg_template');
  await adminQuery(server.url, `CREATE DATABASE "${template}"`);
  const database = connectDatabase(databaseUrl(server.url, template), { max: 1 });
  await migrateDatabase(database.pool);
  await database.close();
  project.provide('postgresServerUrl', server.url);
  project.provide('postgresTemplate', template);
  return async () => {
    await adminQuery(server.url, `DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`);
    await server.stop();
  };
}
