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
  Usage,
  UsageQuery,
} from '../contracts/index.js';
import { ApiClient, segment, type RequestOptions } from './core.js';
import { ChatStream, QueueStream } from './stream.js';
import type { Input, Output, Page } from './types.js';

/**
 * The job API with a team virtual key (`sk-...`): jobs, calls (plain and streamed), the queue, and the team's
 * own credits and usage. Every method takes `RequestOptions` last (signal, idempotencyKey, timeoutMs).
 */
export class CreditgateClient extends ApiClient {
  createJob(body: Input<typeof CreateJobRequest>, options?: RequestOptions): Promise<CreateJobResponse> {
    return this.request({ method: 'POST', path: '/api/jobs/create', body }, options);
  }

  getJob(jobId: string, options?: RequestOptions): Promise<Job> {
    return this.request({ method: 'GET', path: `/api/jobs/${segment(jobId)}` }, options);
  }

  getCosts(jobId: string, options?: RequestOptions): Promise<JobCosts> {
    return this.request({ method: 'GET', path: `/api/jobs/${segment(jobId)}/costs` }, options);
  }

  llmCall(jobId: string, body: Input<typeof LlmCallRequest>, options?: RequestOptions): Promise<LlmCallResponse> {
    return this.request({ method: 'POST', path: `/api/jobs/${segment(jobId)}/llm-call`, body }, options);
  }

  async chatStream(jobId: string, body: Input<typeof LlmCallRequest>, options?: RequestOptions): Promise<ChatStream> {
    return new ChatStream(await this.stream({ method: 'POST', path: `/api/jobs/${segment(jobId)}/llm-call-stream`, body }, options), jobId);
  }

  /** `completed` charges the job by the team's budget mode, `failed` releases its hold. */
  completeJob(jobId: string, body: Input<typeof CompleteJobRequest>, options?: RequestOptions): Promise<CompleteJobResponse> {
    return this.request({ method: 'POST', path: `/api/jobs/${segment(jobId)}/complete`, body }, options);
  }

  cancelJob(jobId: string, options?: RequestOptions): Promise<CompleteJobResponse> {
    return this.request({ method: 'POST', path: `/api/jobs/${segment(jobId)}/cancel` }, options);
  }

  createAndCall(body: Input<typeof CreateAndCallRequest>, options?: RequestOptions): Promise<CreateAndCallResponse> {
    return this.request({ method: 'POST', path: '/api/jobs/create-and-call', body }, options);
  }

  /** The job is completed and charged by the server after the last chunk; `jobId` names it. */
  async createAndCallStream(body: Input<typeof CreateAndCallRequest>, options?: RequestOptions): Promise<ChatStream> {
    return new ChatStream(await this.stream({ method: 'POST', path: '/api/jobs/create-and-call-stream', body }, options));
  }

  /** Starts the call server-side now; follow it with `streamQueue`, stop it with `cancelQueue`. */
  async submit(body: Input<typeof QueueSubmitRequest>, options?: RequestOptions): Promise<QueueSubmitResponse['data']> {
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
  getTransactions(teamId: string, query: Partial<Output<typeof PageQuery>> = {}, options?: RequestOptions): Promise<Page<CreditTransaction>> {
    return this.request({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/transactions`, query }, options);
  }

  getUsage(teamId: string, query: Input<typeof UsageQuery> = {}, options?: RequestOptions): Promise<Usage> {
    return this.request({ method: 'GET', path: `/api/teams/${segment(teamId)}/usage`, query }, options);
  }
}
