import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'creditgate' },
    // Credentials must never reach the logs, whatever a caller passes in.
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'password', '*.password', 'virtual_key'],
      censor: '[redacted]',
    },
  });
}
