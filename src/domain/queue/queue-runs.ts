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
 * replayed from its record.
 */
export class QueueRuns {
  private readonly runs = new Map<string, QueueBroadcast>();
  private readonly budget: FrameBudget;

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

  /** Bytes of frames kept right now, all calls together. */
  get keptBytes(): number {
    return this.budget.usedBytes;
  }
}
