import type { Logger } from './logger.js';
import { AppError } from './errors.js';

/**
 * Runs `work` again in the background with growing pauses (0.5 s doubling to 30 s, about four minutes in all)
 * until it succeeds. Only for idempotent work whose failure was the infrastructure's (a database outage): an
 * AppError is a decision, not a fault, and ends the retries. Resolves true once the work succeeded, false when
 * it was given up.
 */
export function retryInBackground(work: () => Promise<unknown>, log: Logger, what: string, attempts = 12): Promise<boolean> {
  return new Promise((resolve) => {
    const attempt = (n: number, delayMs: number) => {
      setTimeout(() => {
        work().then(
          () => {
            log.info({ what, attempt: n }, 'deferred work done');
            resolve(true);
          },
          (error: unknown) => {
            if (error instanceof AppError || n >= attempts) {
              log.error({ err: error, what, attempt: n }, 'deferred work abandoned; the job sweeper will end the job');
              resolve(false);
              return;
            }
            attempt(n + 1, Math.min(delayMs * 2, 30_000));
          },
        );
      }, delayMs).unref();
    };
    attempt(1, 500);
  });
}
