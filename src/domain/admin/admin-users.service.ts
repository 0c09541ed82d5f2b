import { eq } from 'drizzle-orm';
import type { AdminIdentity, AdminSetupStatus, AdminUser, CreateAdminUserRequest, LoginRequest, LoginResponse } from '../../contracts/index.js';
import { sqlState, UNIQUE_VIOLATION } from '../../db/client.js';
import { adminUsers } from '../../db/schema/index.js';
import { conflict } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { type ServiceContext } from '../context.js';
import { actorLabel } from '../actor.js';
import { signAdminToken, type AdminAuth } from './admin-auth.js';
import { hashPassword, verifyPassword } from './passwords.models.js';
import { invalidCredentials, loginThrottled } from './admin.errors.js';
import { claimLoginAttempt, recordLoginFailure, recordLoginSuccess } from './admin-users.repository.js';
import { isRefusal, type LoginOutcome, type LoginRefusal } from './login-guard.js';
import { addressKey } from './login-throttle.models.js';

type AdminUserRow = typeof adminUsers.$inferSelect;

export async function createAdminUser(ctx: ServiceContext, input: CreateAdminUserRequest): Promise<AdminUser> {
  const passwordHash = await hashPassword(input.password);
  try {
    const [row] = await ctx.db
      .insert(adminUsers)
      .values({ id: newId('adm'), email: input.email, passwordHash, createdBy: actorLabel(ctx.actor) })
      .returning();
    return presentAdminUser(row!);
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) throw conflict(`admin user ${input.email} already exists`, 'already_exists');
    throw error;
  }
}

// Verifying against a fixed hash when the email is unknown keeps the response time from revealing which emails exist.
let decoyHash: Promise<string> | undefined;

/**
 * Every refusal is decided before a password is hashed, and none waits: a locked address, no verification slot
 * free (see LoginGuard), a locked account. Failed logins are logged with the email and address, never the password.
 */
export async function login(ctx: ServiceContext, auth: AdminAuth, input: LoginRequest, clientAddress: string | undefined): Promise<LoginResponse> {
  const address = addressKey(clientAddress);
  const refuse = (refusal: LoginRefusal) => {
    ctx.log.info({ email: input.email, client_address: clientAddress, scope: refusal.scope, retry_after: refusal.retryAfterSeconds }, 'admin login throttled');
    return loginThrottled(refusal.scope, refusal.retryAfterSeconds);
  };
  const admitted = auth.logins.admit(address);
  if (isRefusal(admitted)) throw refuse(admitted);
  let outcome: LoginOutcome = 'not_verified';
  try {
    const claim = await claimLoginAttempt(ctx.db, input.email);
    if (claim.kind === 'locked') throw refuse({ scope: 'account', retryAfterSeconds: claim.retryAfterSeconds });
    const unknownWait = claim.kind === 'unknown' ? auth.logins.unknownAccountRetryAfter(input.email) : 0;
    if (unknownWait > 0) throw refuse({ scope: 'account', retryAfterSeconds: unknownWait });

    decoyHash ??= hashPassword('decoy password that matches nothing');
    const valid = await verifyPassword(input.password, claim.kind === 'claimed' ? claim.passwordHash : await decoyHash);
    if (claim.kind !== 'claimed' || !valid) {
      outcome = 'failed';
      if (claim.kind === 'unknown') auth.logins.unknownAccountFailed(input.email);
      else await recordLoginFailure(ctx.db, claim.userId);
      ctx.log.warn(
        { email: input.email, client_address: clientAddress, known_account: claim.kind === 'claimed', ...(claim.kind === 'claimed' && { failed_attempts: claim.failedAttempts }) },
        'admin login failed',
      );
      throw invalidCredentials();
    }
    await recordLoginSuccess(ctx.db, claim.userId);
    outcome = 'succeeded';
    ctx.log.info({ admin_user_id: claim.userId, client_address: clientAddress }, 'admin login');
    return { access_token: await signAdminToken(auth, claim.userId), token_type: 'Bearer', expires_in: auth.tokenTtlSeconds };
  } finally {
    admitted.finish(outcome);
  }
}

export async function getAdminIdentity(ctx: ServiceContext): Promise<AdminIdentity> {
  if (ctx.actor.kind !== 'admin' || !ctx.actor.adminUserId) return { kind: 'master_key', admin_user: null };
  const [user] = await ctx.db.select().from(adminUsers).where(eq(adminUsers.id, ctx.actor.adminUserId));
  return { kind: 'admin_user', admin_user: user ? presentAdminUser(user) : null };
}

function presentAdminUser(row: AdminUserRow): AdminUser {
  return {
    admin_user_id: row.id,
    email: row.email,
    created_at: row.createdAt.toISOString(),
    last_login_at: row.lastLoginAt?.toISOString() ?? null,
  };
}

/** For the console's first run: only whether any admin user exists, nothing about who. */
export async function adminUsersExist(ctx: ServiceContext): Promise<AdminSetupStatus> {
  const [row] = await ctx.db.select({ id: adminUsers.id }).from(adminUsers).limit(1);
  return { admin_users_exist: row !== undefined };
}
