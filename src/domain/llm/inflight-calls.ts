import { UpstreamError } from '../../upstream/client.js';

export const CANCEL_CHANNEL = 'creditgate_cancel';

const cancelled = () => UpstreamError.aborted('cancelled', 'the job or queue item was cancelled');

/**
 * The upstream requests this process is running, by job id and queue id, so that a cancel aborts them at once:
 * here directly, and on every other instance through PostgreSQL NOTIFY (`publish`), whose listener calls
 * `abortHere`. At shutdown every one of them is aborted, and so is any that registers afterwards.
 */
export class InflightCalls {
  private readonly byKey = new Map<string, Set<AbortController>>();
  private stopReason: UpstreamError | undefined;

  constructor(private readonly publish: (key: string) => Promise<void>) {}

  register(keys: string[], controller: AbortController): () => void {
    if (this.stopReason) controller.abort(this.stopReason);
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
    const set = this.byKey.get(key);
    for (const controller of set ?? []) controller.abort(cancelled());
    return set?.size ?? 0;
  }

  /** Aborts the calls of a job or queue item wherever they run. */
  async cancel(key: string): Promise<void> {
    this.abortHere(key);
    await this.publish(key);
  }

  /** Shutdown: every call of this process ends with `reason` (recorded and settled by its owner), now and from now on. */
  abortAll(reason: UpstreamError): void {
    this.stopReason = reason;
    for (const set of this.byKey.values()) for (const controller of set) controller.abort(reason);
  }
}
