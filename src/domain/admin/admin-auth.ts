import { timingSafeEqual } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { jwtVerify, SignJWT } from 'jose';
import type { DbOrTx } from '../../db/client.js';
import { adminUsers } from '../../db/schema/index.js';
import { hashSecret } from '../api-keys/api-keys.models.js';
import type { Actor } from '../actor.js';
import type { AdminSecrets } from './instance-secrets.js';
import type { LoginGuard } from './login-guard.js';

const ISSUER = 'creditgate';
const AUDIENCE = 'creditgate-admin';

export interface AdminAuth {
  secrets: AdminSecrets;
  tokenTtlSeconds: number;
  /** This instance's login throttling (per address, verification slots); per-account state is in admin_users. */
  logins: LoginGuard;
}

export function isMasterKey(auth: AdminAuth, presented: string): boolean {
  const presentedHash = Buffer.from(hashSecret(presented), 'hex');
  return timingSafeEqual(presentedHash, Buffer.from(auth.secrets.masterKeyHash, 'hex'));
}

export function signAdminToken(auth: AdminAuth, adminUserId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(adminUserId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${auth.tokenTtlSeconds}s`)
    .sign(auth.secrets.jwtSecret);
}

/**
 * An admin actor for a valid, unexpired token of an admin user that still exists; null otherwise.
 * Deleting the user revokes its tokens at once.
 */
export async function verifyAdminToken(db: DbOrTx, auth: AdminAuth, token: string): Promise<Actor | null> {
  let subject: string | undefined;
  try {
    const { payload } = await jwtVerify(token, auth.secrets.jwtSecret, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
    subject = payload.sub;
  } catch {
    return null;
  }
  if (!subject) return null;
  const [user] = await db.select({ id: adminUsers.id }).from(adminUsers).where(eq(adminUsers.id, subject));
  return user ? { kind: 'admin', adminUserId: user.id } : null;
}
