import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { hashSecret } from '../../src/domain/api-keys/api-keys.models.js';
import { verifyTeamKey } from '../../src/domain/api-keys/api-keys.service.js';
import { findModelPrice } from '../../src/domain/billing/model-prices.service.js';
import { Caches } from '../../src/domain/caches.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { within } from '../helpers/wait.js';

/**
 * Every read-through cache of the hot path is safe to ask from inside a transaction: on a pool whose connections
 * are all held, a lookup on the transaction must not wait for a shared load that needs one of them (the deadlock
 * that wedged queue submits). The pool here has one connection, which the transaction holds.
 */
describe('cached lookups inside a transaction', () => {
  let app: TestApp;
  let team: TeamSetup;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    app = await createTestApp();
    team = await setupTeam(app);
    handle = connectDatabase(app.databaseUrl, { max: 1 });
  });

  afterAll(async () => {
    await handle?.close();
    await app?.close();
  });

  const freshCaches = () => new Caches(60_000, { publish: async () => undefined, countListeners: async () => 0 });


  it('verifies a key on the transaction while a pool lookup of the same key waits for its connection', async () => {
    const caches = freshCaches();
    let onPool: Promise<unknown> | undefined;
    await handle.db.transaction(async (tx) => {
      onPool = verifyTeamKey(handle.db, caches, team.key);
      const actor = await within(verifyTeamKey(tx, caches, team.key), 5_000);
      expect(actor).toMatchObject({ kind: 'team', teamId: team.teamId });
    });
    // The pool's own lookup ran once the transaction gave the connection back, and its answer is cached.
    await expect(onPool).resolves.toMatchObject({ kind: 'team', teamId: team.teamId });
    expect(caches.keys.get(hashSecret(team.key))).toMatchObject({ teamId: team.teamId });
  });

  it('finds a model price on the transaction while a pool lookup of the same model waits for its connection', async () => {
    const caches = freshCaches();
    let onPool: Promise<unknown> | undefined;
    await handle.db.transaction(async (tx) => {
      onPool = findModelPrice(handle.db, caches, 'sim-small');
      const price = await within(findModelPrice(tx, caches, 'sim-small'), 5_000);
      expect(price).toEqual({ inputUsdPerMillion: '0.500000', outputUsdPerMillion: '1.500000' });
    });
    await expect(onPool).resolves.toEqual({ inputUsdPerMillion: '0.500000', outputUsdPerMillion: '1.500000' });
    expect(caches.prices.get('sim-small')).toEqual({ inputUsdPerMillion: '0.500000', outputUsdPerMillion: '1.500000' });
  });
});

