import type { Exchange } from './http-client.js';

/**
 * What each simulated client saw, kept to judge the database against at the end: per operation, the job it
 * worked on (when it learnt the id), each call it made (did output reach it, did it see [DONE], did it leave and
 * when), how it tried to end the job, and when it asked for a cancel.
 */

export interface CallObservation {
  /** The upstream tag of the call (`o12c3`), also found in the call's recorded messages. */
  tag: string;
  endpoint: string;
  /** The pid of the creditgate process the request went to. */
  pid: number | undefined;
  status: number;
  contentChunks: number;
  sawDone: boolean;
  errorEvents: number;
  /** The client closed the connection before the answer ended: when (Date.now()) and at which point. */
  leftAt: number | undefined;
  leftWhere: string | undefined;
  transportError: string | undefined;
  startedAt: number;
  endedAt: number;
}

export interface EndingObservation {
  requested: 'completed' | 'failed' | 'cancel';
  status: number;
  code: string | undefined;
  creditsCharged: number | undefined;
  /** When the request was sent, and when its answer came (Date.now()). */
  at: number;
  answeredAt: number;
}

export interface OperationObservation {
  op: number;
  behaviour: string;
  teamId: string | undefined;
  jobId: string | undefined;
  calls: CallObservation[];
  endings: EndingObservation[];
  /** The client never ended the job on purpose (the sweeper must). */
  abandoned: boolean;
  notes: string[];
}

export function callObservation(tag: string, endpoint: string, pid: number | undefined, result: Exchange): CallObservation {
  return {
    tag,
    endpoint,
    pid,
    status: result.status,
    contentChunks: result.contentChunks,
    sawDone: result.sawDone,
    errorEvents: result.errorEvents.length,
    leftAt: result.leftAt,
    leftWhere: result.leftWhere,
    transportError: result.transportError,
    startedAt: result.startedAt,
    endedAt: result.endedAt,
  };
}

export const sawOutput = (op: OperationObservation) => op.calls.some((call) => call.contentChunks > 0);

export class Observations {
  readonly operations: OperationObservation[] = [];
  private readonly byTag = new Map<string, { op: OperationObservation; call?: CallObservation }>();
  private readonly byJob = new Map<string, OperationObservation>();

  begin(op: number, behaviour: string, teamId?: string): OperationObservation {
    const observation: OperationObservation = { op, behaviour, teamId, jobId: undefined, calls: [], endings: [], abandoned: false, notes: [] };
    this.operations.push(observation);
    return observation;
  }

  /** The tag is known before the request goes out (the upstream may see it before the client sees anything). */
  expectTag(op: OperationObservation, tag: string): void {
    this.byTag.set(tag, { op });
  }

  addCall(op: OperationObservation, call: CallObservation): void {
    op.calls.push(call);
    this.byTag.set(call.tag, { op, call });
  }

  setJob(op: OperationObservation, jobId: string | undefined): void {
    if (!jobId || op.jobId === jobId) return;
    op.jobId = jobId;
    this.byJob.set(jobId, op);
  }

  ofTag(tag: string) {
    return this.byTag.get(tag);
  }

  ofJob(jobId: string): OperationObservation | undefined {
    return this.byJob.get(jobId);
  }
}
