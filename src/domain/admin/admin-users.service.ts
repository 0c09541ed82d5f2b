import { eq, sql } from 'drizzle-orm';
import type { AdminIdentity, AdminUser, CreateAdminUserRequest, LoginRequest, LoginResponse } from '../../contracts/index.js';
import { sqlState, UNIQUE_VIOLATION } from '../../db/client.js';
import { adminUsers } from '../../db/schema/index.js';
import { AppError, conflict } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { type ServiceContext } from '../context.js';
import { actorLabel } from '../actor.js';
import { signAdminToken, type AdminAuth } from './admin-auth.js';
import { hashPassword, verifyPassword } from './passwords.models.js';

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

export async function login(ctx: ServiceContext, auth: AdminAuth, input: LoginRequest): Promise<LoginResponse> {
  const [user] = await ctx.db.select().from(adminUsers).where(eq(adminUsers.email, input.email));
  decoyHash ??= hashPassword('decoy password that matches nothing');
  const valid = await verifyPassword(input.password, user?.passwordHash ?? (await decoyHash));
  if (!user || !valid) throw new AppError('unauthenticated', 'invalid email or password', { reason: 'invalid_credentials' });
  await ctx.db.update(adminUsers).set({ lastLoginAt: sql`now()` }).where(eq(adminUsers.id, user.id));
  return { access_token: await signAdminToken(auth, user.id), token_type: 'Bearer', expires_in: auth.tokenTtlSeconds };
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
