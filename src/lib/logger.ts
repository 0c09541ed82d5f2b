import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

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
  return destination ? pino(options, destination) : pino(options);
}
