/**
 * Pure rules of the usage rollups: how an hour of jobs and calls is summed per dimension, how a job's charge is
 * split over the models of its calls, and how latency percentiles are read back from histograms. Amounts stay
 * integers (micro-credits, pico-dollars) until they are presented.
 */
import { picoToUsd, usdToPico } from '../billing/pricing.models.js';

export type Dimension = 'all' | 'team' | 'model' | 'job_type';

/** Histogram buckets 20% apart: bucket 0 is below 10 ms, bucket i covers [10·1.2^(i-1), 10·1.2^i), the last is open. */
export const HISTOGRAM_BUCKETS = 64;
const FIRST_BOUND_MS = 10;
const RATIO = 1.2;

export function histogramBucket(ms: number): number {
  if (!(ms >= FIRST_BOUND_MS)) return 0;
  const index = Math.floor(Math.log(ms / FIRST_BOUND_MS) / Math.log(RATIO)) + 1;
  return Math.min(index, HISTOGRAM_BUCKETS - 1);
}

/**
 * The value a bucket stands for: the geometric middle of its bounds (5 ms for the first), to a hundredth of a
 * millisecond (rounding to whole ones or tenths would put the small buckets further than 10% from what they hold).
 */
export function bucketValue(index: number): number {
  if (index <= 0) return FIRST_BOUND_MS / 2;
  const low = FIRST_BOUND_MS * RATIO ** (index - 1);
  return Math.round(low * Math.sqrt(RATIO) * 100) / 100;
}

/** The q-quantile (0 < q <= 1) of the values counted in `histogram`, to the bucket; null when it is empty. */
export function histogramQuantile(histogram: readonly number[], q: number): number | null {
  const total = histogram.reduce((sum, n) => sum + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let index = 0; index < histogram.length; index++) {
    seen += histogram[index] ?? 0;
    if (seen >= rank) return bucketValue(index);
  }
  return bucketValue(histogram.length - 1);
}

export function addHistograms(into: number[], other: readonly number[] | null | undefined): number[] {
  if (!other) return into;
  for (let index = 0; index < other.length; index++) into[index] = (into[index] ?? 0) + (other[index] ?? 0);
  return into;
}

/**
 * Splits a charge over parts by weight, exactly: each part gets its floor share, and the micro-credits left over
 * go one each to the largest remainders (earliest first on ties). No weight at all: equal parts.
 */
export function splitCharge(totalMicro: number, weights: readonly number[]): number[] {
  if (weights.length === 0) return [];
  const sumWeights = weights.reduce((sum, weight) => sum + weight, 0);
  const effective = sumWeights > 0 ? weights : weights.map(() => 1);
  const denominator = BigInt(sumWeights > 0 ? sumWeights : weights.length);
  const total = BigInt(totalMicro);
  const shares = effective.map((weight) => (total * BigInt(weight)) / denominator);
  const remainders = effective.map((weight, index) => ({ index, rest: (total * BigInt(weight)) % denominator }));
  let left = total - shares.reduce((sum, share) => sum + share, 0n);
  remainders.sort((a, b) => (a.rest === b.rest ? a.index - b.index : a.rest > b.rest ? -1 : 1));
  for (const { index } of remainders) {
    if (left <= 0n) break;
    shares[index] = shares[index]! + 1n;
    left -= 1n;
  }
  return shares.map(Number);
}

export interface RollupCall {
  model: string;
  status: 'in_progress' | 'success' | 'failed' | 'cancelled';
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Decimal string, as stored. */
  costUsd: string;
  latencyMs: number | null;
  ttftMs: number | null;
}

export interface RollupJob {
  /** The start of the hour the job was created in (ms since the epoch). */
  bucket: number;
  teamId: string;
  jobType: string;
  chargedMicro: number;
  calls: RollupCall[];
}

export interface RollupRow {
  dimension: Dimension;
  key: string;
  bucket: number;
  jobs: number;
  calls: number;
  failedCalls: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  costPico: bigint;
  creditsMicro: number;
  latencySumMs: number;
  latencyCount: number;
  ttftSumMs: number;
  ttftCount: number;
  /** Kept for `all` and `model` only: percentiles per team or job type are not offered. */
  latencyHistogram: number[] | null;
  ttftHistogram: number[] | null;
}

const withHistograms = (dimension: Dimension) => dimension === 'all' || dimension === 'model';

function emptyRow(dimension: Dimension, key: string, bucket: number): RollupRow {
  const histogram = () => (withHistograms(dimension) ? new Array<number>(HISTOGRAM_BUCKETS).fill(0) : null);
  return {
    dimension,
    key,
    bucket,
    jobs: 0,
    calls: 0,
    failedCalls: 0,
    promptTokens: 0,
    completionTokens: 0,
    totalTokens: 0,
    costPico: 0n,
    creditsMicro: 0,
    latencySumMs: 0,
    latencyCount: 0,
    ttftSumMs: 0,
    ttftCount: 0,
    latencyHistogram: histogram(),
    ttftHistogram: histogram(),
  };
}

function addCall(row: RollupRow, call: RollupCall, costPico: bigint): void {
  row.calls++;
  if (call.status === 'failed') row.failedCalls++;
  row.promptTokens += call.promptTokens;
  row.completionTokens += call.completionTokens;
  row.totalTokens += call.totalTokens;
  row.costPico += costPico;
  if (call.latencyMs !== null) {
    row.latencySumMs += call.latencyMs;
    row.latencyCount++;
    if (row.latencyHistogram) row.latencyHistogram[histogramBucket(call.latencyMs)]!++;
  }
  if (call.ttftMs !== null) {
    row.ttftSumMs += call.ttftMs;
    row.ttftCount++;
    if (row.ttftHistogram) row.ttftHistogram[histogramBucket(call.ttftMs)]!++;
  }
}

/**
 * Sums jobs into rollup rows for each dimension. A job counts once per row it touches (a job that used two models
 * counts in both); its charge goes whole to its team, its job type and `all`, and split over its calls by tokens
 * for the models (a job without calls is free, so nothing is lost).
 */
export function rollUp(jobs: readonly RollupJob[]): RollupRow[] {
  const rows = new Map<string, RollupRow>();
  const row = (dimension: Dimension, key: string, bucket: number) => {
    const id = `${dimension}\u0000${key}\u0000${bucket}`;
    let found = rows.get(id);
    if (!found) rows.set(id, (found = emptyRow(dimension, key, bucket)));
    return found;
  };
  for (const job of jobs) {
    const whole = [row('all', '', job.bucket), row('team', job.teamId, job.bucket), row('job_type', job.jobType, job.bucket)];
    const costs = job.calls.map((call) => usdToPico(call.costUsd));
    for (const target of whole) {
      target.jobs++;
      target.creditsMicro += job.chargedMicro;
      job.calls.forEach((call, index) => addCall(target, call, costs[index]!));
    }
    const shares = splitCharge(job.chargedMicro, job.calls.map((call) => call.totalTokens));
    const modelsSeen = new Set<string>();
    job.calls.forEach((call, index) => {
      const target = row('model', call.model, job.bucket);
      if (!modelsSeen.has(call.model)) {
        modelsSeen.add(call.model);
        target.jobs++;
      }
      target.creditsMicro += shares[index]!;
      addCall(target, call, costs[index]!);
    });
  }
  return [...rows.values()];
}

export const costUsdOf = (pico: bigint) => picoToUsd(pico);
