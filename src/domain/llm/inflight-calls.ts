import { UpstreamError } from '../../upstream/client.js';

export const CANCEL_CHANNEL = 'creditgate_cancel';

const cancelled = () => UpstreamError.aborted('cancelled', 'the job or queue item was cancelled');

/**
 * How long a cancel that reached this process is remembered: far longer than a cancel waits for its job's calls to
 * end (a call lease and a sweep, see cancelJob). Until the job is settled, new calls of it may still be reserved.
 */
const CANCELLED_FOR_MS = 10 * 60_000;

/**
 * The upstream requests this process is running, by job id and queue id, so that a cancel aborts them at once:
 * here directly, and on every other instance through PostgreSQL NOTIFY (`publish`), whose listener calls
 * `abortHere`. A call that registers after a cancel of its job reached this process is aborted at once: its
 * reservation may have been written just after the cancel sent its abort (it was waiting for the job's lock), or
 * this process registers it a moment late, and the cancel, which waits for the job's calls to end, would wait for it
 * until its deadline and answer 409. At shutdown every call is aborted, and so is any that registers afterwards.
 */
export class InflightCalls {
  private readonly byKey = new Map<string, Set<AbortController>>();
  /** Keys cancelled here, with when, oldest first. */
  private readonly cancelledAt = new Map<string, number>();
  private stopReason: UpstreamError | undefined;

  constructor(private readonly publish: (key: string) => Promise<void>) {}

  register(keys: string[], controller: AbortController): () => void {
    if (this.stopReason) controller.abort(this.stopReason);
    else if (keys.some((key) => this.wasCancelled(key))) controller.abort(cancelled());
    for (const key of keys) {
      const set = this.byKey.get(key) ?? new Set();
      set.add(controller);
      this.byKey.set(key, set);
    }
    return () => {
      for (const key of keys) {
        const set = this.byKey.get(key);
        set?.delete(controller);
        if (set?.size === 0) this.byKey.delete(key);
      }
    };
  }

  abortHere(key: string): number {
    this.forgetCancelsBefore(Date.now() - CANCELLED_FOR_MS);
    this.cancelledAt.delete(key);
    this.cancelledAt.set(key, Date.now());
    const set = this.byKey.get(key);
    for (const controller of set ?? []) controller.abort(cancelled());
    return set?.size ?? 0;
  }

  /** Aborts the calls of a job or queue item wherever they run. */
  async cancel(key: string): Promise<void> {
    this.abortHere(key);
    await this.publish(key);
  }

  private wasCancelled(key: string): boolean {
    const at = this.cancelledAt.get(key);
    return at !== undefined && at > Date.now() - CANCELLED_FOR_MS;
  }

  private forgetCancelsBefore(time: number): void {
    for (const [key, at] of this.cancelledAt) {
      if (at >= time) return;
      this.cancelledAt.delete(key);
    }
  }

  /** Shutdown: every call of this process ends with `reason` (recorded and settled by its owner), now and from now on. */
  abortAll(reason: UpstreamError): void {
    this.stopReason = reason;
    for (const set of this.byKey.values()) for (const controller of set) controller.abort(reason);
  }
}
