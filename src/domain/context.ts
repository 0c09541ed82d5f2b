import type { Config } from '../config.js';
import type { DbOrTx } from '../db/client.js';
import type { Logger } from '../lib/logger.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { Actor } from './actor.js';
import type { Caches } from './caches.js';
import type { CallLeases } from './llm/call-leases.js';
import type { RateLimiter } from './limits/rate-limiter.js';
import type { InflightCalls } from './llm/inflight-calls.js';
import type { QueueRuns } from './queue/queue-runs.js';

/** What a domain function works with: the caller, the database (or the caller's transaction) and the shared services. */
export interface ServiceContext {
  db: DbOrTx;
  actor: Actor;
  requestId: string;
  log: Logger;
  config: Config;
  upstream: UpstreamClient;
  inflight: InflightCalls;
  leases: CallLeases;
  limiter: RateLimiter;
  queue: QueueRuns;
  caches: Caches;
}
