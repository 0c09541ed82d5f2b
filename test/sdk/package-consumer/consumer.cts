// Type-checked with tsc --strict against the published declarations (CommonJS entry); never run.
import { CreditgateClient, type CompletedJob } from '@creditgate/client';

export async function settle(client: CreditgateClient, jobId: string): Promise<number> {
  const completed: CompletedJob = await client.completeJob(jobId, { status: 'completed' });
  return completed.credits_remaining;
}
