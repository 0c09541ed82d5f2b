// Plain node, no TypeScript loader: the ESM build drives a job with job() and a streamed call.
import { CreditgateClient, CreditgateError, InsufficientCreditsError } from '@creditgate/client';

const [baseUrl, apiKey, teamId] = process.argv.slice(2);
const client = new CreditgateClient({ baseUrl, apiKey });

const { result, completed } = await client.job({ team_id: teamId, job_type: 'package-consumer' }, async (job) => {
  const stream = await job.chatStream({ messages: [{ role: 'user', content: 'Hello from plain node' }] });
  let chunks = 0;
  for await (const chunk of stream) if (chunk.object === 'chat.completion.chunk') chunks++;
  return { text: stream.text, chunks, jobId: job.jobId };
});

// The team had 2 credits and has 1 left: a second job at once holds it, a third is refused with a typed error.
const held = await client.createJob({ team_id: teamId, job_type: 'holds-the-last-credit' });
const refused = await client.createJob({ team_id: teamId, job_type: 'refused' }).catch((error) => error);
await client.completeJob(held.job_id, { status: 'failed', error_message: 'nothing to do' });

console.log(JSON.stringify({
  result,
  status: completed.status,
  total_calls: completed.total_calls,
  credits_charged: completed.credits_charged,
  credits_remaining: completed.credits_remaining,
  refused: { insufficient: refused instanceof InsufficientCreditsError, base: refused instanceof CreditgateError, status: refused.status, code: refused.code },
}));
