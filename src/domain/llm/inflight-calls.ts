/**
 * The upstream requests this process is running, by job, so that cancelling a job (from this instance or,
 * through the notifier, from another one) aborts them at once.
 */
export class InflightCalls {
  private readonly byJob = new Map<string, Set<AbortController>>();

  register(jobId: string, controller: AbortController): () => void {
    const set = this.byJob.get(jobId) ?? new Set();
    set.add(controller);
    this.byJob.set(jobId, set);
    return () => {
      set.delete(controller);
      if (set.size === 0) this.byJob.delete(jobId);
    };
  }

  /** Aborts every call of the job running here; returns how many there were. */
  abortJob(jobId: string, reason: unknown): number {
    const set = this.byJob.get(jobId);
    if (!set) return 0;
    for (const controller of set) controller.abort(reason);
    return set.size;
  }

  get size(): number {
    let total = 0;
    for (const set of this.byJob.values()) total += set.size;
    return total;
  }
}
