/**
 * A multi-turn conversation in one job with the typed client: each turn is streamed chunk by chunk, the job
 * is completed once at the end and charged once.
 *
 *   CREDITGATE_URL=http://localhost:8003 CREDITGATE_KEY=sk-... CREDITGATE_TEAM_ID=acme-support npx tsx examples/multi-turn-chat.ts
 */
import { CreditgateClient } from '@creditgate/client';

const client = new CreditgateClient({ baseUrl: process.env.CREDITGATE_URL ?? 'http://localhost:8003', apiKey: required('CREDITGATE_KEY') });
const teamId = required('CREDITGATE_TEAM_ID');

const job = await client.createJob({ team_id: teamId, job_type: 'support_conversation' });
console.log(`job ${job.job_id} (${job.credits_reserved} credit reserved)`);

const messages: { role: 'system' | 'user' | 'assistant'; content: string }[] = [
  { role: 'system', content: 'You are a concise support assistant.' },
];
for (const question of ['My invoice shows two charges.', 'Can you refund one of them?', 'Thanks, how long will it take?']) {
  messages.push({ role: 'user', content: question });
  console.log(`\nuser: ${question}\nassistant: `);
  const stream = await client.chatStream(job.job_id, { messages });
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  const call = await stream.finalCall();
  messages.push({ role: 'assistant', content: call.content });
}

const completed = await client.completeJob(job.job_id, { status: 'completed' });
console.log(`\n\njob ${completed.status}: ${completed.costs.total_calls} calls, ${completed.costs.total_tokens} tokens, ` +
  `${completed.costs.credits_charged} credit charged, ${completed.costs.credits_remaining} left`);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}
