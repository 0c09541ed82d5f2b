import { AppError, notFound } from '../lib/errors.js';
import type { Limits } from './limits/limits.models.js';

/** Who is calling: an administrator (master key or admin user) or a team through one of its virtual keys. */
export type Actor =
  | { kind: 'admin'; adminUserId: string | null }
  | { kind: 'team'; teamId: string; organizationId: string; keyId: string; keyLimits: Limits }
  | { kind: 'anonymous' };

/** How an actor is written into ledger entries and audit columns. */
export function actorLabel(actor: Actor): string {
  if (actor.kind === 'team') return `key:${actor.keyId}`;
  if (actor.kind === 'anonymous') return 'anonymous';
  return actor.adminUserId ? `admin:${actor.adminUserId}` : 'admin:master_key';
}

/** The team a route acts for: only team keys get here (the router refuses other credentials). */
export function teamOf(actor: Actor): string {
  if (actor.kind !== 'team') throw new AppError('forbidden', 'this route needs a team virtual key (sk-...)', { reason: 'team_key_required' });
  return actor.teamId;
}

/** The team a request is confined to: a team key's own team; none for an admin, who sees every team's objects. */
export function teamScope(actor: Actor): string | undefined {
  return actor.kind === 'admin' ? undefined : teamOf(actor);
}

/** A team key sees only its own team; anything else answers "not found" so other teams' ids do not leak. */
export function assertTeamAccess(actor: Actor, teamId: string): void {
  if (actor.kind === 'team' && actor.teamId !== teamId) throw notFound('team', 'team_id');
}
