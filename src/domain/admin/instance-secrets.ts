import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { instanceSecrets } from '../../db/schema/index.js';
import { hashSecret } from '../api-keys/api-keys.models.js';

export interface AdminSecrets {
  masterKeyHash: string;
  jwtSecret: Uint8Array;
  /** Set only on the one start that generated the master key: the caller prints it, nobody can see it again. */
  generatedMasterKey?: string;
}

/**
 * The master key and JWT secret come from the configuration when given; otherwise they are generated once and
 * kept in the database, so every instance and every restart agrees on them. Only the master key's hash is kept.
 */
export async function loadAdminSecrets(db: Database, configured: { masterKey?: string | undefined; jwtSecret?: string | undefined }): Promise<AdminSecrets> {
  let generatedMasterKey: string | undefined;
  let masterKeyHash: string;
  if (configured.masterKey) {
    masterKeyHash = hashSecret(configured.masterKey);
  } else {
    const candidate = `mk-${randomBytes(24).toString('base64url')}`;
    const stored = await storeOnce(db, 'master_key_sha256', hashSecret(candidate));
    if (stored.created) generatedMasterKey = candidate;
    masterKeyHash = stored.value;
  }
  const jwtSecret = configured.jwtSecret ?? (await storeOnce(db, 'jwt_secret', randomBytes(32).toString('base64url'))).value;
  return { masterKeyHash, jwtSecret: new TextEncoder().encode(jwtSecret), ...(generatedMasterKey && { generatedMasterKey }) };
}

/** Insert-if-absent: when instances start together exactly one value wins and all of them read it. */
async function storeOnce(db: Database, name: string, value: string): Promise<{ value: string; created: boolean }> {
  const inserted = await db.insert(instanceSecrets).values({ name, value }).onConflictDoNothing().returning();
  if (inserted[0]) return { value: inserted[0].value, created: true };
  const [existing] = await db.select().from(instanceSecrets).where(eq(instanceSecrets.name, name));
  return { value: existing!.value, created: false };
}
