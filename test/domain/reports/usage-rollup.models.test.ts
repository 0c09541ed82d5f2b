import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { contiguousRanges } from '../../../src/domain/reports/usage-rollups.js';
import { bucketValue, histogramBucket, histogramQuantile, HISTOGRAM_BUCKETS, rollUp, splitCharge, type RollupCall } from '../../../src/domain/reports/usage-rollup.models.js';
import { rangeOf, splitByDay } from '../../../src/domain/reports/time-range.js';

const HOUR = 3_600_000;

describe('splitCharge', () => {
  it.each([
    [1_000_000, [100, 300], [250_000, 750_000]],
    [1_000_000, [1, 1, 1], [333_334, 333_333, 333_333]],
    [10, [0, 0], [5, 5]],
    [7, [2, 1, 0], [5, 2, 0]],
    [0, [5, 5], [0, 0]],
    [5, [], []],
  ])('splits %i over %j as %j', (total, weights, shares) => {
    expect(splitCharge(total, weights)).toEqual(shares);
  });

  it('always adds up to the charge exactly, each share within one micro-credit of its exact part', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e12 }), fc.array(fc.integer({ min: 0, max: 1e6 }), { minLength: 1, maxLength: 20 }), (total, weights) => {
        const shares = splitCharge(total, weights);
        expect(shares.reduce((sum, share) => sum + share, 0)).toBe(total);
        const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
        shares.forEach((share, index) => {
          const exact = weightSum > 0 ? (total * weights[index]!) / weightSum : total / weights.length;
          expect(Math.abs(share - exact)).toBeLessThanOrEqual(1.0001);
        });
      }),
    );
  });
});

describe('latency histograms', () => {
  it.each([
    [0, 0],
    [9, 0],
    [10, 1],
    [11.9, 1],
    [12, 2],
    [1_000, 26],
    [1e12, HISTOGRAM_BUCKETS - 1],
  ])('puts %d ms in bucket %d', (ms, bucket) => {
    expect(histogramBucket(ms)).toBe(bucket);
  });

  it('reads a value back within 10% of what was counted (above 10 ms)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 10, max: 500_000 }), (ms) => {
        expect(Math.abs(bucketValue(histogramBucket(ms)) - ms) / ms).toBeLessThan(0.1);
      }),
    );
  });

  it('gives percentiles by rank', () => {
    const histogram = new Array<number>(HISTOGRAM_BUCKETS).fill(0);
    for (const ms of [100, 100, 100, 100, 100, 100, 100, 100, 100, 5_000]) histogram[histogramBucket(ms)]!++;
    expect(histogramQuantile(histogram, 0.5)).toBe(bucketValue(histogramBucket(100)));
    expect(histogramQuantile(histogram, 0.9)).toBe(bucketValue(histogramBucket(100)));
    expect(histogramQuantile(histogram, 0.95)).toBe(bucketValue(histogramBucket(5_000)));
    expect(histogramQuantile(new Array<number>(HISTOGRAM_BUCKETS).fill(0), 0.5)).toBeNull();
  });
});

describe('rollUp', () => {
  const call = (model: string, totalTokens: number, extra: Partial<RollupCall> = {}): RollupCall => ({
    model,
    status: 'success',
    promptTokens: totalTokens / 2,
    completionTokens: totalTokens / 2,
    totalTokens,
    costUsd: '0.000001000000',
    latencyMs: 200,
    ttftMs: null,
    ...extra,
  });

  it('counts each job once per team, job type and total, and splits its charge over its models by tokens', () => {
    const rows = rollUp([
      { bucket: 0, teamId: 't1', jobType: 'chat', chargedMicro: 1_000_000, calls: [call('small', 100), call('large', 300), call('small', 0, { status: 'failed', latencyMs: null })] },
      { bucket: 0, teamId: 't2', jobType: 'chat', chargedMicro: 0, calls: [] },
      { bucket: HOUR, teamId: 't1', jobType: 'mail', chargedMicro: 2_000_000, calls: [call('small', 10)] },
    ]);
    const find = (dimension: string, key: string, bucket: number) => rows.find((row) => row.dimension === dimension && row.key === key && row.bucket === bucket);
    expect(find('all', '', 0)).toMatchObject({ jobs: 2, calls: 3, failedCalls: 1, totalTokens: 400, creditsMicro: 1_000_000, costPico: 3_000_000n, latencyCount: 2 });
    expect(find('team', 't1', 0)).toMatchObject({ jobs: 1, calls: 3, creditsMicro: 1_000_000, latencyHistogram: null });
    expect(find('team', 't2', 0)).toMatchObject({ jobs: 1, calls: 0, creditsMicro: 0 });
    expect(find('model', 'small', 0)).toMatchObject({ jobs: 1, calls: 2, failedCalls: 1, creditsMicro: 250_000 });
    expect(find('model', 'large', 0)).toMatchObject({ jobs: 1, calls: 1, creditsMicro: 750_000 });
    expect(find('job_type', 'mail', HOUR)).toMatchObject({ jobs: 1, creditsMicro: 2_000_000 });
    expect(find('all', '', 0)!.latencyHistogram![histogramBucket(200)]).toBe(2);
    const models = rows.filter((row) => row.dimension === 'model').reduce((sum, row) => sum + row.creditsMicro, 0);
    expect(models).toBe(3_000_000);
  });
});

describe('ranges', () => {
  it('groups consecutive hours into chunks of at most a day', () => {
    const hours = [0, 1, 2, 5, 6, ...Array.from({ length: 30 }, (_, i) => 10 + i)].map((h) => h * HOUR);
    const ranges = contiguousRanges(hours).map(({ from, to }) => [from / HOUR, to / HOUR]);
    expect(ranges).toEqual([[0, 3], [5, 7], [10, 34], [34, 40]]);
  });

  it('splits a range into whole days without skipped hours and the hours left over', () => {
    const at = (h: number) => new Date(Date.UTC(2026, 11, 1) + h * HOUR);
    const hoursOf = ({ from, to }: { from: Date; to: Date }) => [(from.getTime() - at(0).getTime()) / HOUR, (to.getTime() - at(0).getTime()) / HOUR];
    // From 20:00 on day 0 to 05:00 on day 5; day 3 holds a changed hour (03:00 + 72 h).
    const { days, hours } = splitByDay({ from: at(20), to: at(125) }, new Set([at(75).getTime()]));
    expect(days.map(hoursOf)).toEqual([[24, 72], [96, 120]]);
    expect(hours.map(hoursOf)).toEqual([[20, 24], [72, 96], [120, 125]]);
    expect(splitByDay({ from: at(1), to: at(5) }, new Set())).toEqual({ days: [], hours: [{ from: at(1), to: at(5) }] });
    // Every hour of the range is in exactly one part.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 200 }), fc.array(fc.integer({ min: 0, max: 400 })), (start, length, skipped) => {
        const split = splitByDay({ from: at(start), to: at(start + length) }, new Set(skipped.map((h) => at(h).getTime())));
        const covered = [...split.days, ...split.hours].flatMap(({ from, to }) => Array.from({ length: (to.getTime() - from.getTime()) / HOUR }, (_, i) => from.getTime() + i * HOUR));
        expect(covered.sort((x, y) => x - y)).toEqual(Array.from({ length }, (_, i) => at(start + i).getTime()));
        for (const day of split.days) expect(skipped.some((h) => at(h) >= day.from && at(h) < day.to)).toBe(false);
      }),
    );
  });

  it('turns a period into its calendar month (UTC)', () => {
    expect(rangeOf({ period: '2026-12' })).toEqual({ from: new Date('2026-12-01T00:00:00Z'), to: new Date('2027-01-01T00:00:00Z') });
    expect(rangeOf({ period: '2024-02' }).to).toEqual(new Date('2024-03-01T00:00:00Z'));
    expect(() => rangeOf({ from: '2026-02-01T00:00:00Z', to: '2026-01-01T00:00:00Z' })).toThrow('from must be before to');
  });
});
