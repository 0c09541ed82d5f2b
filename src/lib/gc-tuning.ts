import { setFlagsFromString } from 'node:v8';

/**
 * The garbage collector's settings creditgate runs with, set before it serves anything (src/main.ts; the bench's
 * server does the same).
 *
 * Allocation-site pretenuring off: when nearly every object a literal made since the last young collection is still
 * alive at it, V8 allocates that literal's objects in the old generation from then on. A job's objects are found
 * alive more often than their lifetime explains (bench/README.md), so literals of the job path were pretenured; and
 * an old object that is already garbage still keeps the young objects it points to through every young collection
 * until the next full one, so each job's objects were promoted after it ended, and the old generation filled and was
 * collected more often. At saturation (c=16, two runs each) 11-12 KB were promoted per job with pretenuring, 6 KB
 * without; in three alternating bench pairs the server's CPU per job fell from 2.84 to 2.31 times the proxy's
 * (medians) and the share of the proxy's throughput rose from 42 % to 49 %. Set here, before the first request, it
 * does what it does on the command line (6 KB promoted per job, 5 KB with `node --no-allocation-site-pretenuring`),
 * and every way of starting creditgate gets it.
 */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
