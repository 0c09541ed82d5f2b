import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Logs JSON lines to stdout, or to `destination` (tests read what was logged).
 *
 * Stdout is written asynchronously: a synchronous write blocks the event loop whenever the reader of stdout (a
 * pipe to a log collector) falls behind, which stalled every stream in flight for as long as it did (800 ms with a
 * reader paused for a second), and costs about twice the CPU per line even when it does not. Lines still pending
 * are written synchronously when the process exits (pino flushes its own destinations on exit).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'creditgate' },
    // Credentials must never reach the logs, whatever a caller passes in.
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'password', '*.password', 'virtual_key'],
      censor: '[redacted]',
    },
  };
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }));
}
