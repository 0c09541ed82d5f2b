// Type-checked with tsc --strict against the published declarations (ESM entry); never run.
import {
  AdminClient,
  CreditgateClient,
  InsufficientCreditsError,
  type ChatCompletionChunk,
  type CompletedJob,
  type CreateTeamRequest,
  type Job,
} from '@creditgate/client';

export async function consume(baseUrl: string, apiKey: string): Promise<number> {
  const client = new CreditgateClient({ baseUrl, apiKey, maxRetries: 1 });
  const { result, completed } = await client.job({ team_id: 'acme-support', job_type: 'ticket_reply' }, async (job) => {
    const stream = await job.chatStream({ messages: [{ role: 'user', content: 'Hello' }], max_tokens: 50 });
    for await (const chunk of stream) {
      const piece: string | null | undefined = chunk.choices[0]?.delta.content;
      void piece;
    }
    return (await stream.finalCall()).content;
  });
  const text: string = result;
  const settled: CompletedJob = completed;
  const remaining: number = settled.credits_remaining + settled.costs.credits_remaining;
  const calls: number = settled.total_calls;

  // @ts-expect-error job_type is required by the contract
  await client.createJob({ team_id: 'acme-support' });
  // @ts-expect-error complete takes completed or failed only
  await client.completeJob('job_x', { status: 'done' });

  const job: Job = await client.getJob(settled.job_id);
  const status: 'pending' | 'in_progress' | 'completed' | 'failed' | 'cancelled' | 'expired' = job.status;
  try {
    await client.createJob({ team_id: 'acme-support', job_type: 'x' });
  } catch (error) {
    if (error instanceof InsufficientCreditsError) {
      const code: string | undefined = error.code;
      void code;
    }
  }
  const admin = new AdminClient({ baseUrl, apiKey: 'mk-...' });
  const request: CreateTeamRequest = { organization_id: 'acme', team_id: 'acme-support', model_groups: ['fast'], credits_allocated: 100 };
  const team = await admin.teams.create(request);
  const key: string = team.virtual_key;
  const chunk: ChatCompletionChunk | undefined = undefined;
  void [text, status, key, chunk];
  return remaining + calls;
}
