import type { EventSourceMessage } from 'eventsource-parser';
import type { OpenStream } from './core.js';
import { APIConnectionError, APIUserAbortError, isErrorBody, UpstreamError } from './errors.js';
import { parseData, sseMessages } from './sse.js';
import type { ChatCompletionChunk, FinalCall, QueueEvent, ToolCall } from './types.js';

/** An SSE answer read once, chunk by chunk; leaving the loop early aborts the HTTP request. */
abstract class EventStream<Item> implements AsyncIterable<Item> {
  protected consumed = false;

  constructor(protected readonly open: OpenStream) {}

  /** Stops the stream: its HTTP request is aborted, and a loop over it throws APIUserAbortError. */
  abort(): void {
    this.open.controller.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Item> {
    if (this.consumed) throw new Error('a stream can be iterated only once');
    this.consumed = true;
    let failure: unknown = new APIUserAbortError('the stream was left before it ended');
    try {
      for await (const message of sseMessages(this.open)) {
        const item = this.decode(message);
        if (item !== undefined) yield item;
      }
      this.end();
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      this.closed(failure);
    }
  }

  /** The item a message stands for, or undefined to skip it; throws to end the stream with an error. */
  protected abstract decode(message: EventSourceMessage): Item | undefined;
  /** The body ended normally; may throw if that is too early. */
  protected end(): void {}
  /** Always last: `failure` is what ended the stream, moot when `end()` succeeded. */
  protected closed(_failure: unknown): void {}
}

/**
 * A streamed chat call (`llm-call-stream`, `create-and-call-stream`): the OpenAI chunks, plus the text and
 * tool calls assembled so far, and `finalCall()` once it ended. An in-band `data: {"error"}` throws UpstreamError.
 */
export class ChatStream extends EventStream<ChatCompletionChunk> {
  readonly jobId: string | null;
  readonly callId: string | null;
  private content = '';
  private readonly calls: ToolCall[] = [];
  private finishReason: FinalCall['finishReason'] = null;
  private usage: FinalCall['usage'];
  private sawDone = false;
  private readonly final: Promise<FinalCall>;
  private settle!: { resolve: (call: FinalCall) => void; reject: (error: unknown) => void };

  constructor(open: OpenStream, jobId?: string) {
    super(open);
    this.jobId = open.response.headers.get('x-job-id') ?? jobId ?? null;
    this.callId = open.response.headers.get('x-call-id');
    this.final = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody may ever ask for finalCall(); its rejection must not become an unhandled one.
    this.final.catch(() => undefined);
  }

  /** The content received so far. */
  get text(): string {
    return this.content;
  }

  /** The tool calls received so far, reassembled from their deltas by index. */
  get toolCalls(): ToolCall[] {
    return this.calls.filter(Boolean);
  }

  /** Resolves after the stream ended; reads the rest of it when nobody iterates it. */
  async finalCall(): Promise<FinalCall> {
    if (!this.consumed) for await (const _chunk of this);
    return this.final;
  }

  protected decode(message: EventSourceMessage): ChatCompletionChunk | undefined {
    if (this.sawDone) return undefined;
    if (message.data === '[DONE]') {
      this.sawDone = true;
      return undefined;
    }
    const payload = parseData(message);
    if (isErrorBody(payload)) throw new UpstreamError(payload.error.message, { error: payload.error, headers: this.open.response.headers });
    const chunk = payload as ChatCompletionChunk;
    this.accumulate(chunk);
    return chunk;
  }

  protected override end(): void {
    if (!this.sawDone) throw new APIConnectionError('the stream ended before [DONE]');
    this.settle.resolve({
      content: this.content,
      toolCalls: this.toolCalls,
      finishReason: this.finishReason,
      ...(this.usage && { usage: this.usage }),
    });
  }

  protected override closed(failure: unknown): void {
    // A no-op after end() resolved it.
    this.settle.reject(failure);
  }

  private accumulate(chunk: ChatCompletionChunk): void {
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) return;
    this.content += choice.delta.content ?? '';
    this.finishReason = choice.finish_reason ?? this.finishReason;
    for (const delta of choice.delta.tool_calls ?? []) {
      const call = (this.calls[delta.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
      call.id ||= delta.id ?? '';
      call.function.name += delta.function?.name ?? '';
      call.function.arguments += delta.function?.arguments ?? '';
    }
  }
}

const QUEUE_EVENTS = new Set<string>(['start', 'chunk', 'error', 'done'] satisfies QueueEvent['event'][]);

/** `streamQueue`: the queue API's named events, up to `done`; an `error` event is yielded, not thrown. */
export class QueueStream extends EventStream<QueueEvent> {
  protected decode(message: EventSourceMessage): QueueEvent | undefined {
    if (!message.event || !QUEUE_EVENTS.has(message.event)) return undefined;
    return { event: message.event, data: parseData(message) } as QueueEvent;
  }
}
