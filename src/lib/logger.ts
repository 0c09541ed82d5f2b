import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Stdout is written asynchronously: a synchronous write blocks the event loop whenever the reader of stdout (a
 * pipe to a log collector) falls behind, which stalled every stream in flight for as long as it did (800 ms with a
 * reader paused for a second). Lines are gathered up to 4 KiB, or for 100 ms at most, per write: one asynchronous
 * write per line (one access-log line per request) costs a thread-pool round trip each, more CPU than the
 * synchronous write it replaces. Behind a reader that stopped, at most 64 MiB wait; later lines are dropped rather
 * than growing the heap without bound. Lines still waiting are written synchronously when the process exits
 * (pino flushes its own destinations on exit).
 */
const STDOUT = { dest: 1, sync: false, minLength: 4096, periodicFlush: 100, maxLength: 64 * 1024 * 1024 };

/** Logs JSON lines to stdout, or to `destination` (tests read what was logged). */
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
  return pino(options, destination ?? pino.destination(STDOUT));
}
