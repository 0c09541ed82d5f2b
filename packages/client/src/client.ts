import type {
  CompleteJobRequest,
  CompleteJobResponse,
  CreateAndCallRequest,
  CreateAndCallResponse,
  CreateJobRequest,
  CreateJobResponse,
  CreditBalance,
  CreditTransaction,
  Job,
  JobCosts,
  LlmCallRequest,
  LlmCallResponse,
  PageQuery,
  QueueItem,
  QueueSubmitRequest,
  QueueSubmitResponse,
  UpdateJobMetadataRequest,
  Usage,
  UsageQuery,
} from './contracts.js';
import { ApiClient, segment, type RequestOptions } from './core.js';
import { ConflictError } from './errors.js';
import { ChatStream, QueueStream } from './stream.js';
import type { CompletedJob, CreateAndCallResult, Page } from './types.js';

/** The job a `job()` callback works in: the calls of the client, bound to this job. */
export interface JobHandle {
  readonly jobId: string;
  readonly created: CreateJobResponse;
  llmCall(body: LlmCallRequest, options?: RequestOptions): Promise<LlmCallResponse>;
  chatStream(body: LlmCallRequest, options?: RequestOptions): Promise<ChatStream>;
  get(options?: RequestOptions): Promise<Job>;
  costs(options?: RequestOptions): Promise<JobCosts>;
}

export interface JobOptions extends RequestOptions {
  /** Merged into the job's metadata when it is completed. */
  completionMetadata?: Record<string, unknown>;
}

/** How long job() waits for the server to record calls it stopped before it completes the job. */
const CALLS_END_WAIT_MS = 10_000;

/**
 * The job API with a team virtual key (`sk-...`): jobs, calls (plain and streamed), the queue, and the team's
 * own credits and usage. Every method takes `RequestOptions` last (signal, idempotencyKey, timeoutMs).
 */
export class CreditgateClient extends ApiClient {
  createJob(body: CreateJobRequest, options?: RequestOptions): Promise<CreateJobResponse> {
    return this.request({ method: 'POST', path: '/api/jobs/create', body }, options);
  }

  /**
   * Creates a job, runs `work` in it, and completes it: `completed` when `work` resolves, `failed` when it throws
   * (the error is then rethrown). Either way the job is settled by the team's billing policy. Streams `work`
   * opened and did not finish are stopped first: a job cannot be completed while one of its calls runs.
   */
  async job<T>(body: CreateJobRequest, work: (job: JobHandle) => Promise<T>, options: JobOptions = {}): Promise<{ result: T; completed: CompletedJob }> {
    const { completionMetadata, idempotencyKey, ...requestOptions } = options;
    const created = await this.createJob(body, { ...requestOptions, ...(idempotencyKey && { idempotencyKey }) });
    const jobId = created.job_id;
    const streams: ChatStream[] = [];
    const handle: JobHandle = {
      jobId,
      created,
      llmCall: (call, callOptions) => this.llmCall(jobId, call, { ...requestOptions, ...callOptions }),
      chatStream: async (call, callOptions) => {
        const stream = await this.chatStream(jobId, call, { ...requestOptions, ...callOptions });
        streams.push(stream);
        return stream;
      },
      get: (getOptions) => this.getJob(jobId, { ...requestOptions, ...getOptions }),
      costs: (getOptions) => this.getCosts(jobId, { ...requestOptions, ...getOptions }),
    };
    // The completion gets a key derived from the job's, so a retried job() replays rather than completes twice.
    const completeKey = idempotencyKey && `${idempotencyKey}:complete`;
    const complete = (request: CompleteJobRequest) => {
      for (const stream of streams) stream.abort();
      return this.completeOnceCallsEnded(jobId, { ...request, ...(completionMetadata && { metadata: completionMetadata }) }, {
        ...requestOptions,
        ...(completeKey && { idempotencyKey: completeKey }),
      });
    };
    let result: T;
    try {
      result = await work(handle);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // The caller's error matters more; a job that could not be failed is expired by the server later.
      await complete({ status: 'failed', error_message: message.slice(0, 4000) }).catch(() => undefined);
      throw error;
    }
    return { result, completed: await complete({ status: 'completed' }) };
  }

  /**
   * completeJob, retried while the server still records a call that was just stopped (`409 calls_in_progress`;
   * it records a disconnected call within a second).
   */
  private async completeOnceCallsEnded(jobId: string, body: CompleteJobRequest, options: RequestOptions): Promise<CompletedJob> {
    const deadline = Date.now() + CALLS_END_WAIT_MS;
    for (;;) {
      try {
        return await this.completeJob(jobId, body, options);
      } catch (error) {
        if (!(error instanceof ConflictError && error.code === 'calls_in_progress') || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  getJob(jobId: string, options?: RequestOptions): Promise<Job> {
    return this.request({ method: 'GET', path: `/api/jobs/${segment(jobId)}` }, options);
  }

  getCosts(jobId: string, options?: RequestOptions): Promise<JobCosts> {
    return this.request({ method: 'GET', path: `/api/jobs/${segment(jobId)}/costs` }, options);
  }

  /** Merges keys into the job's metadata; a key set to null is removed. */
  updateJobMetadata(jobId: string, body: UpdateJobMetadataRequest, options?: RequestOptions): Promise<Job> {
    return this.request({ method: 'PATCH', path: `/api/jobs/${segment(jobId)}/metadata`, body }, options);
  }

  llmCall(jobId: string, body: LlmCallRequest, options?: RequestOptions): Promise<LlmCallResponse> {
    return this.request({ method: 'POST', path: `/api/jobs/${segment(jobId)}/llm-call`, body }, options);
  }

  async chatStream(jobId: string, body: LlmCallRequest, options?: RequestOptions): Promise<ChatStream> {
    return new ChatStream(await this.stream({ method: 'POST', path: `/api/jobs/${segment(jobId)}/llm-call-stream`, body }, options), jobId);
  }

  /** Settles the job once by the team's billing policy (a job none of whose calls delivered output is free). */
  async completeJob(jobId: string, body: CompleteJobRequest, options?: RequestOptions): Promise<CompletedJob> {
    return withCosts(await this.request<CompleteJobResponse>({ method: 'POST', path: `/api/jobs/${segment(jobId)}/complete`, body }, options));
  }

  async cancelJob(jobId: string, options?: RequestOptions): Promise<CompletedJob> {
    return withCosts(await this.request<CompleteJobResponse>({ method: 'POST', path: `/api/jobs/${segment(jobId)}/cancel` }, options));
  }

  async createAndCall(body: CreateAndCallRequest, options?: RequestOptions): Promise<CreateAndCallResult> {
    return withCosts(await this.request<CreateAndCallResponse>({ method: 'POST', path: '/api/jobs/create-and-call', body }, options));
  }

  /** The job is completed and charged by the server after the last chunk; `jobId` names it. */
  async createAndCallStream(body: CreateAndCallRequest, options?: RequestOptions): Promise<ChatStream> {
    return new ChatStream(await this.stream({ method: 'POST', path: '/api/jobs/create-and-call-stream', body }, options));
  }

  /** Starts the call server-side now; follow it with `streamQueue`, stop it with `cancelQueue`. */
  async submit(body: QueueSubmitRequest, options?: RequestOptions): Promise<QueueSubmitResponse['data']> {
    const answer = await this.request<QueueSubmitResponse>({ method: 'POST', path: '/api/llm/complete', body }, options);
    return answer.data;
  }

  /** Every event of the queued call from its start (a late reader gets a replay), then live ones, up to `done`. */
  async streamQueue(queueId: string, options?: RequestOptions): Promise<QueueStream> {
    return new QueueStream(await this.stream({ method: 'POST', path: '/api/llm/queue/stream', body: { queueId } }, options));
  }

  async cancelQueue(queueId: string, options?: RequestOptions): Promise<QueueSubmitResponse['data']> {
    const answer = await this.request<QueueSubmitResponse>({ method: 'POST', path: '/api/llm/queue/cancel', body: { queueId } }, options);
    return answer.data;
  }

  getQueued(queueId: string, options?: RequestOptions): Promise<QueueItem> {
    return this.request({ method: 'GET', path: `/api/llm/queue/${segment(queueId)}` }, options);
  }

  getBalance(teamId: string, options?: RequestOptions): Promise<CreditBalance> {
    return this.request({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/balance` }, options);
  }

  /** The team's ledger, newest first. */
  getTransactions(teamId: string, query: PageQuery = {}, options?: RequestOptions): Promise<Page<CreditTransaction>> {
    return this.request({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/transactions`, query }, options);
  }

  getUsage(teamId: string, query: UsageQuery = {}, options?: RequestOptions): Promise<Usage> {
    return this.request({ method: 'GET', path: `/api/teams/${segment(teamId)}/usage`, query }, options);
  }
}

/** The answer with its `costs` also at the top level, as the seed's clients read them. */
function withCosts<Answer extends { costs: JobCosts }>(answer: Answer): Answer & JobCosts {
  return { ...answer, ...answer.costs };
}
