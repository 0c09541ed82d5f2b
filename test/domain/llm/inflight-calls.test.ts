import { afterEach, describe, expect, it, vi } from 'vitest';
import { InflightCalls } from '../../../src/domain/llm/inflight-calls.js';
import { UpstreamError } from '../../../src/upstream/client.js';

describe('InflightCalls', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('aborts the calls of a cancelled key, here and through publish; the others run on', async () => {
    const published: string[] = [];
    const inflight = new InflightCalls(async (key) => void published.push(key));
    const [job, other] = [new AbortController(), new AbortController()];
    inflight.register(['job_a'], job);
    inflight.register(['job_b'], other);
    await inflight.cancel('job_a');
    expect(job.signal.aborted).toBe(true);
    expect(job.signal.reason).toMatchObject({ kind: 'aborted', code: 'cancelled' });
    expect(other.signal.aborted).toBe(false);
    expect(published).toEqual(['job_a']);
  });

  it('aborts at once a call of a cancelled key that registers after the cancel arrived (its reservation was written late)', () => {
    const inflight = new InflightCalls(async () => undefined);
    expect(inflight.abortHere('job_a')).toBe(0);
    const late = new AbortController();
    inflight.register(['job_a'], late);
    expect(late.signal.reason).toBeInstanceOf(UpstreamError);
    expect(late.signal.reason).toMatchObject({ kind: 'aborted', code: 'cancelled' });
    const unrelated = new AbortController();
    inflight.register(['job_b'], unrelated);
    expect(unrelated.signal.aborted).toBe(false);
  });

  it('forgets a cancel after ten minutes', () => {
    vi.useFakeTimers();
    const inflight = new InflightCalls(async () => undefined);
    inflight.abortHere('job_a');
    vi.advanceTimersByTime(10 * 60_000 + 1);
    inflight.abortHere('job_b'); // and drops the old ones as it goes
    const later = new AbortController();
    inflight.register(['job_a'], later);
    expect(later.signal.aborted).toBe(false);
    const recent = new AbortController();
    inflight.register(['job_b'], recent);
    expect(recent.signal.aborted).toBe(true);
  });
});
