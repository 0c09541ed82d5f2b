import type { Config } from '../config.js';
import type { DbOrTx } from '../db/client.js';
import { AppError, notFound } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { Caches } from './caches.js';
import type { CallLeases } from './llm/call-leases.js';
import type { InflightCalls } from './llm/inflight-calls.js';
import type { QueueRuns } from './queue/queue.service.js';

/** Who is calling: an administrator (master key or admin user) or a team through one of its virtual keys. */
export type Actor =
  | { kind: 'admin'; adminUserId: string | null }
  | { kind: 'team'; teamId: string; organizationId: string; keyId: string }
  | { kind: 'anonymous' };

export interface ServiceContext {
  db: DbOrTx;
  actor: Actor;
  requestId: string;
  log: Logger;
  config: Config;
  upstream: UpstreamClient;
  inflight: InflightCalls;
  leases: CallLeases;
  queue: QueueRuns;
  caches: Caches;
}

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

/** A team key sees only its own team; anything else answers "not found" so other teams' ids do not leak. */
export function assertTeamAccess(actor: Actor, teamId: string): void {
  if (actor.kind === 'team' && actor.teamId !== teamId) throw notFound('team', 'team_id');
}
