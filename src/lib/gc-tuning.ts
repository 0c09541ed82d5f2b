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
 *
 * Young collections on the main thread alone: V8 splits a scavenge between the main thread and helper threads, and
 * the main thread waits for every helper that started. creditgate shares its cores with PostgreSQL and often with
 * LiteLLM; a helper thread that loses its core mid-scavenge holds the pause, and every request and chunk behind it,
 * until the scheduler gives the core back (`perf sched latency` at paced c=16 on the 2-core VM: wake-up delays of
 * 3-11 ms for Node's helper threads). A young generation of 16 MB with well under 1 MB surviving is scavenged in
 * 1-3 ms by one thread. Three alternating bench pairs (paced c=16 and 64, saturation c=64): added TTFT p99 over
 * the proxy's at paced c=64 5.3, 9.0, 13.9 ms with parallel scavenges, 3.8, 3.0, 3.1 without; at saturation c=64
 * 23.6, 16.8, 27.5 against 19.2, 14.6, 15.7; throughput and CPU per job unchanged.
 */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
  setFlagsFromString('--no-parallel-scavenge');
}
