import type { QueueBroadcast } from './queue-broadcast.js';

const LINGER_MS = 60_000;

/** The broadcasts of the queued calls this process runs, kept a minute after they end for late readers. */
export class QueueRuns {
  private readonly runs = new Map<string, QueueBroadcast>();

  add(queueId: string, broadcast: QueueBroadcast): void {
    this.runs.set(queueId, broadcast);
  }

  get(queueId: string): QueueBroadcast | undefined {
    return this.runs.get(queueId);
  }

  finished(queueId: string): void {
    setTimeout(() => this.runs.delete(queueId), LINGER_MS).unref();
  }
}
