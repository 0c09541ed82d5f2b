import { eq, fillPlaceholders, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { CompiledStatement } from '../../src/db/compiled-statement.js';
import { jobs } from '../../src/db/schema/index.js';

interface Values extends Record<string, unknown> {
  jobId: string;
  metadata: Record<string, unknown>;
  limit: number;
}

// A placeholder on its own, one a column encodes (jsonb), and constants, in the shapes the hot statements use.
const STATEMENT = new CompiledStatement<Values>(
  'cg_test_params',
  (v) => sql`SELECT ${7}::int, ${v.limit}::int FROM ${jobs} WHERE ${eq(jobs.id, v.jobId)} AND ${eq(jobs.metadata, v.metadata)} AND ${'x'} = ${'x'}`,
);

describe('a compiled statement', () => {
  it("fills its parameters as drizzle's fillPlaceholders does", () => {
    const values: Values = { jobId: 'job_1', metadata: { a: [1, 'b'] }, limit: 3 };
    const filled = STATEMENT.params(values);
    expect(filled).toEqual(fillPlaceholders(STATEMENT.query.params, values));
    expect(filled).toEqual([7, 3, 'job_1', { a: [1, 'b'] }, 'x', 'x']);
  });

  it('refuses values without one of its placeholders', () => {
    expect(() => STATEMENT.params({ jobId: 'job_1', limit: 3 } as unknown as Values)).toThrow('No value for placeholder "metadata" was provided');
  });
});
