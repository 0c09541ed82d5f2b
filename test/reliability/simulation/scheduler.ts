import { BEHAVIOUR_WEIGHTS, BEHAVIOURS, type SimContext } from './behaviours.js';
import { operationRandom } from './random.js';

/**
 * Runs the operations of a simulation: `concurrency` clients take operations 0..ops-1 in order, each drawing its
 * behaviour and plan from the generator of its index (see random.ts). Chaos events (an instance stopped or killed)
 * start, without blocking any client, when the operation they are tied to is taken. Past `maxRunMs` no new
 * operation is taken (a busy machine then runs a prefix of the same operations) and chaos events not yet started
 * start at once.
 */

export interface ChaosEvent {
  name: string;
  /** Starts when this operation is taken. */
  atOp: number;
  run(): Promise<void>;
}

export interface RunReport {
  /** Operations taken (fewer than asked when the time budget ran out). */
  opsRun: number;
  /** Operations per behaviour. */
  counts: Record<string, number>;
  /** Mean and longest duration per behaviour (ms). */
  durations: Record<string, { meanMs: number; maxMs: number }>;
  /** Exceptions thrown by the harness itself (never by the server's answers: those are observations). */
  harnessErrors: { op: number; behaviour: string; error: string }[];
  chaos: { name: string; atOp: number; startedAt: number; endedAt?: number; error?: string }[];
  elapsedMs: number;
}

export async function runOperations(options: {
  seed: number;
  ops: number;
  concurrency: number;
  sim: SimContext;
  chaos: ChaosEvent[];
  maxRunMs: number;
  log: (line: string) => void;
}): Promise<RunReport> {
  const { seed, ops, concurrency, sim, chaos, log } = options;
  const report: RunReport = { opsRun: 0, counts: {}, durations: {}, harnessErrors: [], chaos: [], elapsedMs: 0 };
  const totals = new Map<string, { sum: number; max: number }>();
  const startedAt = Date.now();
  const chaosRuns: Promise<void>[] = [];
  let next = 0;

  const started = new Set<ChaosEvent>();
  /** Starts the events not started yet that are `due`, at operation `op`. */
  const startChaos = (op: number, due: (event: ChaosEvent) => boolean) => {
    for (const event of chaos.filter((e) => !started.has(e) && due(e))) {
      started.add(event);
      const entry: RunReport['chaos'][number] = { name: event.name, atOp: op, startedAt: Date.now() };
      report.chaos.push(entry);
      log(`[sim] op ${op}: ${event.name}`);
      chaosRuns.push(
        event.run().then(
          () => void (entry.endedAt = Date.now()),
          (error: unknown) => void (entry.error = String(error)),
        ),
      );
    }
  };

  const client = async () => {
    for (;;) {
      if (next < ops && Date.now() - startedAt > options.maxRunMs) {
        log(`[sim] time budget of ${Math.round(options.maxRunMs / 1000)} s used: stopping after ${next} of ${ops} operations`);
        startChaos(next, () => true);
        next = ops;
      }
      const op = next++;
      if (op >= ops) return;
      report.opsRun = op + 1;
      startChaos(op, (event) => event.atOp === op);
      if (op > 0 && op % 500 === 0) log(`[sim] op ${op}/${ops} after ${Math.round((Date.now() - startedAt) / 1000)} s`);
      const rng = operationRandom(seed, op);
      const behaviour = rng.weighted(BEHAVIOUR_WEIGHTS);
      report.counts[behaviour] = (report.counts[behaviour] ?? 0) + 1;
      const opStartedAt = Date.now();
      try {
        await BEHAVIOURS[behaviour]!.run(sim, rng, op);
      } catch (error) {
        report.harnessErrors.push({ op, behaviour, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      }
      const took = Date.now() - opStartedAt;
      const total = totals.get(behaviour) ?? { sum: 0, max: 0 };
      totals.set(behaviour, { sum: total.sum + took, max: Math.max(total.max, took) });
    }
  };

  await Promise.all(Array.from({ length: concurrency }, client));
  await Promise.all(chaosRuns);
  report.elapsedMs = Date.now() - startedAt;
  for (const [behaviour, total] of totals) {
    report.durations[behaviour] = { meanMs: Math.round(total.sum / report.counts[behaviour]!), maxMs: total.max };
  }
  return report;
}
