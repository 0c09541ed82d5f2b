/** Server-sent event frames, exactly as OpenAI-compatible clients parse them. */
export const sseData = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
export const sseEvent = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
export const sseComment = (text: string) => `: ${text}\n\n`;
export const SSE_DONE = 'data: [DONE]\n\n';

export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  // nginx and similar proxies buffer event streams unless told not to.
  'X-Accel-Buffering': 'no',
} as const;
