import type { Request } from 'express';
import { verifyAdminToken } from '../../domain/admin/admin-auth.js';
import { isMasterKey } from '../../domain/admin/admin-auth.js';
import { verifyTeamKey } from '../../domain/api-keys/api-keys.service.js';
import { TEAM_KEY_PREFIX } from '../../domain/api-keys/api-keys.models.js';
import type { Actor } from '../../domain/actor.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../lib/errors.js';
import type { RouteAuth } from '../route.js';

const unauthenticated = (message: string) => new AppError('unauthenticated', message, { reason: 'invalid_api_key' });

/** Resolves the bearer credential into an actor and checks it may use a route of this kind. */
export async function authenticate(auth: Exclude<RouteAuth, 'public'>, req: Request, deps: Deps): Promise<Actor> {
  const header = req.get('authorization');
  const match = header?.match(/^Bearer\s+(\S{1,512})\s*$/i);
  if (!match) throw unauthenticated('missing bearer credential: send Authorization: Bearer <key>');
  const credential = match[1]!;
  // The master key first (a constant-time comparison of hashes): it may start with `sk-` too, as LiteLLM's must.
  const actor = isMasterKey(deps.adminAuth, credential)
    ? ({ kind: 'admin', adminUserId: null } as const)
    : credential.startsWith(TEAM_KEY_PREFIX)
      ? await verifyTeamKey(deps.db, deps.caches, credential)
      : await verifyAdminToken(deps.db, deps.adminAuth, credential);
  if (!actor) throw unauthenticated('invalid, revoked or expired credential');
  if (auth === 'admin' && actor.kind !== 'admin') {
    throw new AppError('forbidden', 'this route needs the master key or an admin token', { reason: 'admin_required' });
  }
  if (auth === 'team' && actor.kind !== 'team') {
    throw new AppError('forbidden', 'this route needs a team virtual key (sk-...)', { reason: 'team_key_required' });
  }
  return actor;
}
