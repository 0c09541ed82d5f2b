/**
 * After a quiet spell: what the first burst of streams pays for the idle gap before it (connections closed, caches
 * expired, a machine that clocked down), next to a burst of the same arm just before the gap. Real traffic comes in
 * bursts with pauses between them, so this tail is one users see.
 */
import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Arm } from './arms.js';
import { percentile, runStream } from './load.js';

export interface IdleGapRecord {
  arm: string;
  armLabel: string;
  gapMs: number;
  burst: number;
  /** Per repetition: TTFT p50 and slowest of the warm burst, then of the burst after the gap (ms). */
  reps: { warmP50: number; warmMax: number; afterP50: number; afterMax: number }[];
  /** Medians over the repetitions of (after - warm). */
  addedP50: number;
  addedMax: number;
  errors: number;
  okStreams: number;
}

export const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50);

async function burst(arm: Arm, agent: http.Agent, size: number, timeoutMs: number) {
  const results = await Promise.all(Array.from({ length: size }, (_, i) => runStream(arm.targets[i % arm.targets.length]!, agent, { timeoutMs })));
  const ttft = results.flatMap((result) => (result.ok && result.ttftMs !== undefined ? [result.ttftMs] : [])).sort((a, b) => a - b);
  return { p50: percentile(ttft, 50), max: ttft.at(-1) ?? Number.NaN, ok: ttft.length, errors: results.length - ttft.length };
}

/**
 * For each repetition: a warm burst on every arm, one idle gap for all of them (nothing runs anywhere), then a burst
 * on every arm, one arm after the other.
 */
export async function measureIdleGaps(arms: Arm[], agent: http.Agent, options: { gapMs: number; burst: number; reps: number; timeoutMs: number }): Promise<IdleGapRecord[]> {
  const records = arms.map((arm) => ({ arm, reps: [] as IdleGapRecord['reps'], errors: 0, okStreams: 0 }));
  for (let rep = 0; rep < options.reps; rep++) {
    const warm = [];
    for (const { arm } of records) warm.push(await burst(arm, agent, options.burst, options.timeoutMs));
    await sleep(options.gapMs);
    for (const [index, record] of records.entries()) {
      const after = await burst(record.arm, agent, options.burst, options.timeoutMs);
      const before = warm[index]!;
      record.reps.push({ warmP50: before.p50, warmMax: before.max, afterP50: after.p50, afterMax: after.max });
      record.errors += before.errors + after.errors;
      record.okStreams += before.ok + after.ok;
    }
    process.stdout.write(`  idle gap ${rep + 1}/${options.reps} done\n`);
  }
  return records.map(({ arm, reps, errors, okStreams }) => ({
    arm: arm.id,
    armLabel: arm.label,
    gapMs: options.gapMs,
    burst: options.burst,
    reps,
    addedP50: median(reps.map((r) => r.afterP50 - r.warmP50)),
    addedMax: median(reps.map((r) => r.afterMax - r.warmMax)),
    errors,
    okStreams,
  }));
}
