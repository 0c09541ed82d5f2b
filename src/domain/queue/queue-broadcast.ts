import type { StreamSink } from '../../sse/sink.js';

/**
 * The frames of one queued call, kept from the start and handed to every attached reader: a reader attaching
 * late gets everything so far, then the rest live. The call writes into it without ever waiting for readers,
 * and runs whether or not anyone is attached. Its signal aborts only when the call is cancelled.
 */
export class QueueBroadcast implements StreamSink {
  readonly frames: string[] = [];
  private readonly readers = new Set<(frame: string | null) => void>();
  private finished = false;
  readonly opened = true;
  readonly closed = false;
  /** Registered under the queue id in the in-flight calls, so a cancel reaches the call from the moment it exists. */
  readonly controller = new AbortController();
  readonly signal = this.controller.signal;

  open(): void {}

  write(frame: string): undefined {
    this.frames.push(frame);
    for (const reader of this.readers) reader(frame);
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
