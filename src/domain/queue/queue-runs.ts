import { FrameBudget, QueueBroadcast } from './queue-broadcast.js';

export interface QueueMemory {
  /** Replay frames one queued call may keep. */
  itemBytes: number;
  /** Replay frames all queued calls of this process may keep together. */
  totalBytes: number;
  /** How long a finished call's frames stay for readers attaching just after it ended. */
  lingerMs: number;
}

/**
 * The broadcasts of the queued calls this process runs. What they keep for late readers is bounded per call and in
 * all (see QueueBroadcast), and freed `lingerMs` after each call ends: from then on a late reader gets the call
 * replayed from its record. What a running call holds besides (its answer being accumulated for the record, the
 * upstream's buffers) is bounded by how many run at once: each waits for a running slot, in the order they came.
 */
export class QueueRuns {
  private readonly runs = new Map<string, QueueBroadcast>();
  private readonly budget: FrameBudget;
  private running = 0;
  /** The calls waiting for a running slot, first come first: each takes the slot when called. */
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly memory: QueueMemory) {
    this.budget = new FrameBudget(memory.totalBytes);
  }

  start(queueId: string): QueueBroadcast {
    const broadcast = new QueueBroadcast(this.budget, this.memory.itemBytes);
    this.runs.set(queueId, broadcast);
    return broadcast;
  }

  /** The running (or just finished) call, if its frames from the start are still here. */
  replayable(queueId: string): QueueBroadcast | undefined {
    const broadcast = this.runs.get(queueId);
    return broadcast?.replayable ? broadcast : undefined;
  }

  finished(queueId: string): void {
    setTimeout(() => {
      this.runs.get(queueId)?.release();
      this.runs.delete(queueId);
    }, this.memory.lingerMs).unref();
  }

  /**
   * Resolves once the caller may run, at most `maxRunning` at once, in the order they asked: with the function that
   * gives the slot back; or with undefined if `signal` aborted first (a cancel), which takes no slot.
   */
  runSlot(maxRunning: number, signal: AbortSignal): Promise<(() => void) | undefined> {
    if (signal.aborted) return Promise.resolve(undefined);
    if (this.running < maxRunning && this.waiting.length === 0) return Promise.resolve(this.takeSlot());
    return new Promise((resolve) => {
      const take = () => {
        signal.removeEventListener('abort', leave);
        resolve(this.takeSlot());
      };
      const leave = () => {
        this.waiting.splice(this.waiting.indexOf(take), 1);
        resolve(undefined);
      };
      this.waiting.push(take);
      signal.addEventListener('abort', leave, { once: true });
    });
  }

  private takeSlot(): () => void {
    this.running++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.running--;
      this.waiting.shift()?.();
    };
  }

  /** Queued calls running right now. */
  get runningCount(): number {
    return this.running;
  }

  /** Queued calls waiting for a running slot right now. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /** Bytes of frames kept right now, all calls together. */
  get keptBytes(): number {
    return this.budget.usedBytes;
  }
}
