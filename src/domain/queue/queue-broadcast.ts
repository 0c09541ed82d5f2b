import type { StreamSink } from '../../sse/sink.js';

/** Bytes of replay frames all queued calls of this process may keep together, shared by their broadcasts. */
export class FrameBudget {
  private used = 0;

  constructor(readonly totalBytes: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.totalBytes) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }

  get usedBytes(): number {
    return this.used;
  }
}

/**
 * The frames of one queued call, handed to every attached reader as they come: the call writes into it without
 * ever waiting for readers, and runs whether or not anyone is attached. Its signal aborts only when the call is
 * cancelled.
 *
 * Frames are also kept for readers that attach late, up to `itemBytes` for this call and within the process's
 * shared budget. A call that outgrows them stops keeping frames (`replayable` turns false): a late reader then
 * follows it through the database and gets it replayed from its record when it ends. So memory per call is bounded
 * whatever the size of its answer.
 */
export class QueueBroadcast implements StreamSink {
  private frames: string[] = [];
  private keptBytes = 0;
  private keeping = true;
  private readonly readers = new Set<(frame: string | null) => void>();
  private finished = false;
  readonly opened = true;
  readonly closed = false;
  /** Registered under the queue id in the in-flight calls, so a cancel reaches the call from the moment it exists. */
  readonly controller = new AbortController();
  readonly signal = this.controller.signal;

  constructor(
    private readonly budget: FrameBudget,
    private readonly itemBytes: number,
  ) {}

  open(): void {}

  onAbort(listener: (reason: unknown) => void): () => void {
    const { signal } = this;
    const onAbort = () => listener(signal.reason);
    if (signal.aborted) {
      onAbort();
      return () => undefined;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  }

  write(frame: string): undefined {
    if (this.keeping) this.keep(frame);
    for (const reader of this.readers) reader(frame);
  }

  private keep(frame: string): void {
    const bytes = frame.length * 2;
    if (this.keptBytes + bytes <= this.itemBytes && this.budget.take(bytes)) {
      this.frames.push(frame);
      this.keptBytes += bytes;
      return;
    }
    this.release();
  }

  /** Stops keeping frames and gives their bytes back (too large, or the call is over and has lingered). */
  release(): void {
    this.keeping = false;
    this.frames = [];
    this.budget.give(this.keptBytes);
    this.keptBytes = 0;
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    for (const reader of this.readers) reader(null);
    this.readers.clear();
  }

  get done(): boolean {
    return this.finished;
  }

  /** A late reader can get every frame from here: none was dropped. */
  get replayable(): boolean {
    return this.keeping;
  }

  /** Every frame so far, then each new one, then null at the end; returns the unsubscribe function. */
  subscribe(reader: (frame: string | null) => void): () => void {
    for (const frame of this.frames) reader(frame);
    if (this.finished) {
      reader(null);
      return () => undefined;
    }
    this.readers.add(reader);
    return () => this.readers.delete(reader);
  }
}
