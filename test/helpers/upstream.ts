import type { RecordedRequest, UpstreamScript } from '../../src/upstream/simulated-server.js';
import type { TestApp } from './app.js';

/** The upstream request number `index` (0-based) of that app's upstream, once it has arrived. */
export async function upstreamRequest(app: TestApp, index: number, timeoutMs = 10_000): Promise<RecordedRequest> {
  return (await app.upstream.waitForRequests(index + 1, timeoutMs))[index]!;
}

/** The largest number of upstream requests that were open at the same time. */
export function maxOverlap(requests: { startedAt: number; closedAt?: number; finishedAt?: number }[]): number {
  const events = requests.flatMap((r) => [
    { at: r.startedAt, delta: 1 },
    { at: r.closedAt ?? r.finishedAt ?? Number.MAX_SAFE_INTEGER, delta: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let max = 0;
  for (const event of events) {
    open += event.delta;
    max = Math.max(max, open);
  }
  return max;
}

/** A reply that calls get_weather({"city":"Paris"}) as `call_weather_1`, its arguments in deltas `delayMs` apart. */
export const weatherToolScript = (delayMs = 0): UpstreamScript => ({
  steps: [
    { type: 'tool_call', index: 0, id: 'call_weather_1', name: 'get_weather', arguments: '', ...(delayMs && { delayMs }) },
    { type: 'tool_call', index: 0, arguments: '{"city":', ...(delayMs && { delayMs }) },
    { type: 'tool_call', index: 0, arguments: '"Paris"}', ...(delayMs && { delayMs }) },
    { type: 'finish', reason: 'tool_calls' },
  ],
  usage: { prompt_tokens: 30, completion_tokens: 12 },
});
