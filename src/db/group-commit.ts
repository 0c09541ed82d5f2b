import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../lib/logger.js';
import { sqlState, type Database } from './client.js';
import { CompiledStatement, routeStatements, type StatementRunner } from './compiled-statement.js';

/**
 * At most this many executions share a round trip: a batch holds its teams' balance rows until it commits, and a
 * batch that fails is run again execution by execution.
 */
export const MAX_BATCH = 64;
/**
 * Round trips of one statement in flight at once from this process; executions arriving meanwhile wait for one. One:
 * a second round trip in flight mostly waited for the first on the same team's balance row, and sent more of them
 * alone (bench, saturation on one team: 0.89 round trips per job at c=16 and 0.27 at c=64 with two; 0.56 and 0.16
 * with one, and 10 % more jobs per second).
 */
const IN_FLIGHT = 1;
/** Serialises the creation of the batch functions when several instances start at once. */
const INSTALL_LOCK = 0x67636d74;

interface Pending {
  values: Record<string, unknown>;
  resolve(rows: unknown[]): void;
  reject(error: unknown): void;
}

interface Lane {
  statement: CompiledStatement<any>;
  functionName: string;
  queue: Pending[];
  inFlight: number;
}

interface BatchRow {
  cg_index: number;
  cg_row: Record<string, unknown>;
}

/**
 * SQLSTATE classes of errors that are not the statement's own: a cancel or a shutdown (57), the connection (08),
 * resources (53), the system (58) or PostgreSQL itself (XX). Running the executions again one by one would meet
 * the same trouble as many times over.
 */
const NOT_THE_STATEMENTS = new Set(['57', '08', '53', '58', 'XX']);

/**
 * Group commit for the hot autocommit statements (open a job with its hold, settle it). An execution that finds
 * its statement idle is sent at once, alone, as before: a lone request waits for nothing. Executions that arrive
 * while IN_FLIGHT round trips of their statement are running queue up, and the next round trip carries all of them
 * (up to MAX_BATCH) to a PL/pgSQL function that runs the same statement once per execution, in order of the row
 * each locks first, and commits them together: one round trip, one commit and one WAL flush for the lot. So the
 * wait is at most one statement's time, and batches grow only under load.
 *
 * Each execution sees the ones before it (a new snapshot per statement, as separate statements would), so the
 * balance checks that sell 20 of 50 jobs to a 20-credit team hold within a batch as between batches. The executions
 * share the batch's transaction, with no subtransaction each: a subtransaction that waited for the balance row
 * keeps a lock on it that every later execution of the batch has to carry in a MultiXact, and every reader of the
 * row's versions then looks the MultiXact up (a fifth to a third of PostgreSQL's CPU at saturation, and growing
 * with the run: bench/README.md). So an execution that fails fails the batch: its statement's error rolls the
 * whole batch back, and each execution is then run again on its own, which gives every caller the answer it would
 * have had without batching. A batch that fails for another reason (its connection lost, a cancel) fails each of
 * its executions, as a lost single statement would. The functions are generated at start-up from the statements'
 * own SQL, named by its hash, so instances of different versions never share one.
 */
export class GroupCommit implements StatementRunner {
  /**
   * Round trips that carried more than one execution, the executions they carried, the most in one, executions
   * sent alone, and batches that failed and had their executions run again one by one.
   */
  readonly stats = { batches: 0, batchedExecutions: 0, largestBatch: 0, alone: 0, batchesRetried: 0 };
  private readonly lanes = new Map<CompiledStatement<any>, Lane>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly db: Database,
    private readonly log: Logger,
  ) {}

  /** Creates the batch functions (once per database and version) and routes the statements through group commit. */
  static async install(pool: pg.Pool, db: Database, log: Logger): Promise<GroupCommit> {
    const groupCommit = new GroupCommit(pool, db, log);
    for (const statement of CompiledStatement.groupCommitted) {
      const functionName = await installBatchFunction(pool, statement);
      groupCommit.lanes.set(statement, { statement, functionName, queue: [], inFlight: 0 });
    }
    routeStatements(db, groupCommit);
    return groupCommit;
  }

  run<R>(statement: CompiledStatement<any>, values: Record<string, unknown>): Promise<R[]> {
    const lane = this.lanes.get(statement);
    if (!lane) return statement.runAlone<R>(this.db, values);
    return new Promise<R[]>((resolve, reject) => {
      lane.queue.push({ values, resolve: resolve as (rows: unknown[]) => void, reject });
      this.pump(lane);
    });
  }

  private pump(lane: Lane): void {
    while (lane.inFlight < IN_FLIGHT && lane.queue.length > 0) {
      const batch = lane.queue.splice(0, MAX_BATCH);
      lane.inFlight++;
      void this.send(lane, batch).finally(() => {
        lane.inFlight--;
        this.pump(lane);
      });
    }
  }

  /** One execution in a round trip of its own; its caller gets its rows or its error. */
  private runAlone(lane: Lane, pending: Pending): Promise<void> {
    return lane.statement.runAlone(this.db, pending.values).then(pending.resolve, pending.reject);
  }

  private async send(lane: Lane, batch: Pending[]): Promise<void> {
    if (batch.length === 1) {
      this.stats.alone++;
      await this.runAlone(lane, batch[0]!);
      return;
    }
    this.stats.batches++;
    this.stats.batchedExecutions += batch.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    // Stable: executions of one team keep their arrival order. Only a batch needs the keys and the parameters: an
    // execution sent alone is run by its prepared statement from its values.
    const groupBy = lane.statement.options.groupBy!;
    const ordered = batch
      .map((pending, index) => ({ pending, index, key: groupBy(pending.values) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.index - b.index));
    let rows: BatchRow[];
    try {
      const items = ordered.map(({ pending }) => lane.statement.params(pending.values).map(asText));
      const result = await this.pool.query<BatchRow>({
        name: lane.functionName,
        text: `SELECT cg_index, cg_row FROM ${lane.functionName}($1::jsonb)`,
        values: [JSON.stringify(items)],
      });
      rows = result.rows;
    } catch (error) {
      const code = sqlState(error);
      if (code === undefined || NOT_THE_STATEMENTS.has(code.slice(0, 2))) {
        for (const { pending } of ordered) pending.reject(error);
        return;
      }
      // Rolled back as a whole, nothing of it written: each execution runs on its own, as without batching.
      this.stats.batchesRetried++;
      this.log.debug({ statement: lane.statement.name, batch: batch.length, err: error }, 'group commit: a batch failed, its executions run alone');
      await Promise.all(ordered.map(({ pending }) => this.runAlone(lane, pending)));
      return;
    }
    const outcomes = ordered.map(() => [] as unknown[]);
    for (const row of rows) outcomes[row.cg_index]!.push(row.cg_row);
    ordered.forEach(({ pending }, position) => pending.resolve(outcomes[position]!));
  }
}

/** A parameter as the text the function casts to its type (the driver would send the same text). */
function asText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/**
 * The PL/pgSQL function that runs `statement` once per item of a JSON array of parameter lists. Its parameters'
 * types are the ones PostgreSQL infers for the statement (read from a PREPARE in a transaction, so that through a
 * transaction pooler the PREPARE and the read reach the same server connection).
 */
async function installBatchFunction(pool: pg.Pool, statement: CompiledStatement<any>): Promise<string> {
  const text = statement.query.sql;
  // Named by its own SQL (its parameters' types follow from the statement's), so a new way of batching is a new name.
  const hash = createHash('sha256').update(batchFunctionSql('', statement.name, text, [])).digest('hex').slice(0, 12);
  const functionName = `cg_batch_${hash}`;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      const exists = await client.query('SELECT 1 FROM pg_proc WHERE proname = $1', [functionName]);
      if (exists.rowCount === 0) {
        await client.query('SELECT pg_advisory_xact_lock($1)', [INSTALL_LOCK]);
        const again = await client.query('SELECT 1 FROM pg_proc WHERE proname = $1', [functionName]);
        if (again.rowCount === 0) {
          await client.query(`PREPARE cg_batch_probe AS ${text}`);
          const types = await client.query<{ types: string[] }>(`SELECT parameter_types::text[] AS types FROM pg_prepared_statements WHERE name = 'cg_batch_probe'`);
          await client.query('DEALLOCATE cg_batch_probe');
          await client.query(batchFunctionSql(functionName, statement.name, text, types.rows[0]!.types));
        }
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
  } finally {
    client.release();
  }
  return functionName;
}

function batchFunctionSql(functionName: string, statementName: string, text: string, types: string[]): string {
  if (text.includes('$cg_body$')) throw new Error(`statement ${statementName} cannot be put in a function body`);
  const declarations = types.map((type, index) => `cg_p${index + 1} ${type};`).join('\n  ');
  const assignments = types.map((type, index) => `cg_p${index + 1} := (cg_item->>${index})::${type};`).join('\n    ');
  // `$12` must not be read as `$1` followed by `2`: the whole number is replaced.
  const body = text.replace(/\$(\d+)/g, (_, n: string) => `cg_p${n}`);
  return `CREATE FUNCTION ${functionName}(cg_items jsonb)
RETURNS TABLE (cg_index int, cg_row jsonb)
LANGUAGE plpgsql AS $cg_body$
#variable_conflict use_column
DECLARE
  cg_item jsonb;
  cg_position int := 0;
  cg_rec record;
  ${declarations}
BEGIN
  -- ${statementName}: group commit of its executions (src/db/group-commit.ts)
  FOR cg_item IN SELECT value FROM jsonb_array_elements(cg_items) LOOP
    ${assignments}
    FOR cg_rec IN ${body} LOOP
      cg_index := cg_position; cg_row := to_jsonb(cg_rec);
      RETURN NEXT;
    END LOOP;
    cg_position := cg_position + 1;
  END LOOP;
END
$cg_body$`;
}
