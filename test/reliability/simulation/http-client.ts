import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

/**
 * One client request to creditgate over node:http, on a connection of its own, with the client's misbehaviour
 * under control at the socket level: leave (destroy the socket) at a chosen point, read slowly, or stop reading
 * for a while. What the client saw is summarised for the model of observations: whether any content (or tool
 * call) reached it, whether it saw [DONE], and when it left.
 */

export type LeavePoint =
  /** Half the body sent, then gone 0–30 ms later (the request never completes). */
  | { at: 'during-body'; delayMs: number }
  /** The whole request sent, then gone `delayMs` (0–30) later. */
  | { at: 'after-send'; delayMs: number }
  /** Gone as soon as the first bytes of the answer arrived. */
  | { at: 'first-byte' }
  /** Gone after this many content chunks. */
  | { at: 'after-content'; chunks: number }
  /** Gone on the chunk that carries the finish_reason, before [DONE] arrives. */
  | { at: 'before-done' };

export interface ReadingStyle {
  /** Pause this long after every piece of data read from the socket. */
  readDelayMs?: number;
  /** After the first content, stop reading for this long once. */
  stallMs?: number;
}

export interface ExchangeOptions {
  baseUrl: string;
  path: string;
  token: string;
  body: unknown;
  method?: 'POST' | 'GET';
  leave?: LeavePoint | undefined;
  reading?: ReadingStyle | undefined;
  /** Called once, when the first output (content or tool call) arrives. */
  onOutput?: () => void;
  /** The client gives up (leaves) after this long. */
  patienceMs: number;
}

export interface Exchange {
  /** 0 when no answer came. */
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as received (SSE or JSON), capped. */
  text: string;
  /** A parsed JSON body, for non-event-stream answers. */
  json: any;
  stream: boolean;
  /** Content or tool-call deltas received (stream), or 1 for a completion whose message has either. */
  contentChunks: number;
  sawDone: boolean;
  sawFinish: boolean;
  errorEvents: unknown[];
  /** The client itself closed the connection before the answer ended. */
  left: boolean;
  leftAt: number | undefined;
  leftWhere: string | undefined;
  transportError: string | undefined;
  startedAt: number;
  endedAt: number;
}

const TEXT_CAP = 64_000;

/** True when a chat.completion.chunk delta or a completion message carries output (a role-only delta does not). */
export function hasOutput(part: any): boolean {
  if (!part || typeof part !== 'object') return false;
  if (typeof part.content === 'string' && part.content.length > 0) return true;
  return Array.isArray(part.tool_calls) && part.tool_calls.length > 0;
}

/** The message of a completion as each endpoint wraps it (v1: the completion; job routes: `response`). */
export function completionMessage(json: any): any {
  const completion = json?.object === 'chat.completion' ? json : json?.response;
  return completion?.choices?.[0]?.message;
}

export function exchange(options: ExchangeOptions): Promise<Exchange> {
  const url = new URL(options.baseUrl + options.path);
  const payload = options.body === undefined ? '' : JSON.stringify(options.body);
  const result: Exchange = {
    status: 0,
    headers: {},
    text: '',
    json: undefined,
    stream: false,
    contentChunks: 0,
    sawDone: false,
    sawFinish: false,
    errorEvents: [],
    left: false,
    leftAt: undefined,
    leftWhere: undefined,
    transportError: undefined,
    startedAt: Date.now(),
    endedAt: 0,
  };

  return new Promise<Exchange>((resolve) => {
    let finished = false;
    let buffer = '';
    const timers = new Set<NodeJS.Timeout>();
    const later = (ms: number, fn: () => void) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        fn();
      }, ms);
      timers.add(timer);
    };
    const finish = () => {
      if (finished) return;
      finished = true;
      for (const timer of timers) clearTimeout(timer);
      result.endedAt = Date.now();
      if (!result.stream && result.status > 0) {
        try {
          result.json = result.text ? JSON.parse(result.text) : undefined;
        } catch {
          result.json = undefined;
        }
        if (result.status >= 200 && result.status < 300 && hasOutput(completionMessage(result.json))) result.contentChunks = 1;
      }
      resolve(result);
    };

    const req = httpRequest({
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method: options.method ?? 'POST',
      agent: false,
      headers: {
        authorization: `Bearer ${options.token}`,
        ...(payload && { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
      },
    });

    const leave = (where: string) => {
      if (finished || result.left) return;
      result.left = true;
      result.leftAt = Date.now();
      result.leftWhere = where;
      req.destroy();
      finish();
    };

    req.on('error', (error) => {
      if (!result.left) result.transportError = `${error.name}: ${error.message}`;
      finish();
    });
    later(options.patienceMs, () => leave('patience'));

    req.on('response', (res) => {
      result.status = res.statusCode ?? 0;
      result.headers = res.headers;
      result.stream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
      let stalled = false;
      res.on('data', (data: Buffer) => {
        const text = data.toString('utf8');
        if (result.text.length < TEXT_CAP) result.text += text;
        if (options.leave?.at === 'first-byte') return leave('first-byte');
        if (result.stream) {
          buffer += text;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            onFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (finished) return;
          }
        }
        const { reading } = options;
        if (reading?.stallMs && !stalled && result.contentChunks > 0) {
          stalled = true;
          res.pause();
          later(reading.stallMs, () => res.resume());
        } else if (reading?.readDelayMs) {
          res.pause();
          later(reading.readDelayMs, () => res.resume());
        }
      });
      res.on('end', finish);
      res.on('error', (error) => {
        if (!result.left) result.transportError = `${error.name}: ${error.message}`;
        finish();
      });
      res.on('close', () => {
        if (!res.complete && !result.left && !result.transportError) result.transportError = 'connection closed before the end of the answer';
        finish();
      });
    });

    function onFrame(frame: string) {
      for (const line of frame.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          result.sawDone = true;
          continue;
        }
        let event: any;
        try {
          event = JSON.parse(data);
        } catch {
          continue;
        }
        if (event?.error) {
          result.errorEvents.push(event.error);
          continue;
        }
        // The queue's stream: `event: chunk` {delta, finishReason, toolCallDeltas?}.
        if ((typeof event?.delta === 'string' && event.delta.length > 0) || (Array.isArray(event?.toolCallDeltas) && event.toolCallDeltas.length > 0)) {
          result.contentChunks++;
        }
        for (const choice of event?.choices ?? []) {
          if (hasOutput(choice?.delta)) result.contentChunks++;
          if (choice?.finish_reason) result.sawFinish = true;
        }
      }
      if (result.contentChunks > 0 && options.onOutput) {
        options.onOutput();
        options.onOutput = undefined;
      }
      const leavePoint = options.leave;
      if (leavePoint?.at === 'after-content' && result.contentChunks >= leavePoint.chunks) leave('after-content');
      // Only when [DONE] is not already in hand: then the server is still between the last chunk and [DONE].
      else if (leavePoint?.at === 'before-done' && result.sawFinish && !result.sawDone && !buffer.includes('data: [DONE]')) leave('before-done');
    }

    const leavePoint = options.leave;
    if (leavePoint?.at === 'during-body' && payload.length > 1) {
      req.write(payload.slice(0, Math.floor(payload.length / 2)));
      later(leavePoint.delayMs, () => leave('during-body'));
      return;
    }
    req.end(payload || undefined);
    if (leavePoint?.at === 'after-send') later(leavePoint.delayMs, () => leave('after-send'));
  });
}
