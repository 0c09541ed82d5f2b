import { hkdfSync, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { instanceSecrets } from '../../db/schema/index.js';
import { hashSecret } from '../api-keys/api-keys.models.js';

/** Where the key that signs admin JWTs came from (logged at start, never the key). */
export type JwtSecretSource = 'environment' | 'master_key' | 'data_dir';

export interface AdminSecrets {
  masterKeyHash: string;
  jwtSecret: Uint8Array;
  jwtSecretSource: JwtSecretSource;
  /** Set only on the one start that generated the master key: the caller prints it, nobody can see it again. */
  generatedMasterKey?: string;
}

export const JWT_SECRET_FILE = 'jwt-secret';

/**
 * The master key comes from the configuration, or is generated once with only its hash kept in the database.
 * The JWT signing key is never in the database, so read access to it (a backup, a replica, an injection) is not
 * enough to mint admin tokens: JWT_SECRET when given; else derived from MASTER_KEY when that is given (instances
 * sharing the master key share the signing key with nothing stored); else, with a generated master key whose
 * plain text is gone, a random key in a 0600 file under DATA_DIR.
 */
export async function loadAdminSecrets(
  db: Database,
  configured: { masterKey?: string | undefined; jwtSecret?: string | undefined; dataDir: string },
): Promise<AdminSecrets> {
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
  const [jwtSecret, jwtSecretSource]: [Uint8Array, JwtSecretSource] = configured.jwtSecret
    ? [new TextEncoder().encode(configured.jwtSecret), 'environment']
    : configured.masterKey
      ? [deriveJwtSecret(configured.masterKey), 'master_key']
      : [await readOrCreateSecretFile(path.join(configured.dataDir, JWT_SECRET_FILE)), 'data_dir'];
  return { masterKeyHash, jwtSecret, jwtSecretSource, ...(generatedMasterKey && { generatedMasterKey }) };
}

/**
 * HKDF-SHA256 of the master key with a fixed context: deterministic, so every instance given the key agrees, and
 * one-way, so a token key does not reveal the master key. Changing MASTER_KEY signs every admin out.
 */
export function deriveJwtSecret(masterKey: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', masterKey, 'creditgate', 'admin-jwt-signing-key-v1', 32));
}

/** Insert-if-absent: when instances start together exactly one value wins and all of them read it. */
async function storeOnce(db: Database, name: string, value: string): Promise<{ value: string; created: boolean }> {
  const inserted = await db.insert(instanceSecrets).values({ name, value }).onConflictDoNothing().returning();
  if (inserted[0]) return { value: inserted[0].value, created: true };
  const [existing] = await db.select().from(instanceSecrets).where(eq(instanceSecrets.name, name));
  return { value: existing!.value, created: false };
}

/**
 * Written to a temporary file and linked into place, which fails if the file exists: instances starting together
 * on one DATA_DIR agree on the first one linked, and none reads a half-written file. A file others can read is
 * narrowed to 0600 rather than trusted as is.
 */
async function readOrCreateSecretFile(file: string): Promise<Uint8Array> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(temporary, `${randomBytes(32).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 });
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  } finally {
    await rm(temporary, { force: true });
  }
  const secret = (await readFile(file, 'utf8')).trim();
  if (secret.length < 32) throw new Error(`${file} holds no usable JWT secret (at least 32 characters); delete it to generate one`);
  return new TextEncoder().encode(secret);
}
