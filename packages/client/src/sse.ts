import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { OpenStream } from './core.js';
import { APIConnectionError, APIUserAbortError } from './errors.js';

/**
 * The SSE messages of an open stream, each as soon as its frame is complete (comments such as `: keepalive` are
 * skipped by the parser). Leaving early — `break`, a throw, `return()` — aborts the HTTP request, which is how
 * the server learns the client is gone and stops the upstream call.
 */
export async function* sseMessages({ response, controller, callerSignal, release }: OpenStream): AsyncGenerator<EventSourceMessage> {
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => pending.push(message) });
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  let finished = false;
  try {
    for (;;) {
      const chunk = await reader.read().catch((cause: unknown) => {
        if (controller.signal.aborted || callerSignal?.aborted) throw new APIUserAbortError('the stream was aborted', { cause });
        throw new APIConnectionError('the stream was cut off', { cause });
      });
      if (chunk.done) break;
      parser.feed(decoder.decode(chunk.value, { stream: true }));
      yield* pending.splice(0);
    }
    parser.feed(decoder.decode());
    parser.reset({ consume: true });
    yield* pending.splice(0);
    finished = true;
  } finally {
    if (!finished) controller.abort();
    reader.releaseLock();
    release();
  }
}

/** Parses one `data:` payload; a broken frame means the stream cannot be trusted any more. */
export function parseData(message: EventSourceMessage): unknown {
  try {
    return JSON.parse(message.data);
  } catch (cause) {
    throw new APIConnectionError(`the stream sent a frame that is not JSON: ${message.data.slice(0, 100)}`, { cause });
  }
}
