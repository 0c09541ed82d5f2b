/**
 * The official OpenAI SDK, unchanged, against creditgate's /v1: every request is a billed job of the team.
 *
 *   CREDITGATE_URL=http://localhost:8003 CREDITGATE_KEY=sk-... CREDITGATE_MODEL=fast npx tsx examples/openai-sdk.ts
 */
import OpenAI from 'openai';

const openai = new OpenAI({ baseURL: `${process.env.CREDITGATE_URL ?? 'http://localhost:8003'}/v1`, apiKey: process.env.CREDITGATE_KEY });
const model = process.env.CREDITGATE_MODEL ?? (await openai.models.list()).data[0]!.id;

const reply = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'Say hello in French.' }] });
console.log(`non-streamed: ${reply.choices[0]?.message.content}`);

const stream = await openai.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'Count to five.' }],
  stream: true,
  stream_options: { include_usage: true },
});
process.stdout.write('streamed: ');
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  if (chunk.usage) console.log(`\nusage: ${chunk.usage.total_tokens} tokens`);
}
