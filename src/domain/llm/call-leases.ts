import type { DbOrTx } from '../../db/client.js';
import type { Logger } from '../../lib/logger.js';
import { renewCallLeases } from './calls.repository.js';

/**
 * The calls this process is responsible for, from the moment their row is written (reserved) until their record is
 * written (or given up on): their lease is renewed every `leaseSeconds / 3` in one statement, so the sweeper of any
 * instance can tell a live call (never expire its job) from one whose instance died (abandon it). Shutdown waits
 * here for every call to be recorded before the database pool closes.
 */
export class CallLeases {
  private readonly held = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly db: DbOrTx,
    readonly leaseSeconds: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(1000, (this.leaseSeconds * 1000) / 3));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  hold(callId: string): void {
    this.held.add(callId);
  }

  release(callId: string): void {
    this.held.delete(callId);
    if (this.held.size > 0) return;
    for (const wake of this.waiters.splice(0)) wake();
  }

  get count(): number {
    return this.held.size;
  }

  /** Resolves once no call is held, or after `timeoutMs`; true when all were released. */
  drained(timeoutMs: number): Promise<boolean> {
    if (this.held.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    try {
      await renewCallLeases(this.db, [...this.held]);
    } catch (error) {
      // A database outage: the next renewal tries again; a lease only lapses after `leaseSeconds` without one.
      this.log.warn({ err: error, calls: this.held.size }, 'could not renew call leases');
    }
  }
}
