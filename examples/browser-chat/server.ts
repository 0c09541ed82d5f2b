/**
 * A browser chat that streams through a small server: the page never sees the team's virtual key; the server
 * sends each message to creditgate's create-and-call-stream with the typed client and relays the chunks as they
 * arrive. A browser that leaves mid-answer closes its request, which stops the stream here, which disconnects
 * from creditgate, which aborts the upstream request.
 *
 *   CREDITGATE_URL=http://localhost:8003 CREDITGATE_KEY=sk-... CREDITGATE_TEAM_ID=acme-support PORT=3000 npx tsx examples/browser-chat/server.ts
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { APIUserAbortError, CreditgateClient, CreditgateError, type ChatMessage } from '@creditgate/client';

const client = new CreditgateClient({ baseUrl: process.env.CREDITGATE_URL ?? 'http://localhost:8003', apiKey: process.env.CREDITGATE_KEY ?? '' });
const teamId = process.env.CREDITGATE_TEAM_ID ?? '';
const page = await readFile(new URL('./index.html', import.meta.url));

const server = createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
    return;
  }
  if (req.method === 'POST' && req.url === '/chat') {
    let body = '';
    for await (const part of req) body += part;
    const { messages } = JSON.parse(body) as { messages: ChatMessage[] };
    let stream;
    try {
      stream = await client.createAndCallStream({ team_id: teamId, job_type: 'browser_chat', messages });
    } catch (error) {
      const status = error instanceof CreditgateError ? (error.status ?? 502) : 500;
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end(error instanceof Error ? error.message : 'error');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.on('close', () => {
      if (!res.writableFinished) stream.abort();
    });
    // Relayed as it arrives: the browser sees each chunk as soon as creditgate sends it.
    try {
      for await (const chunk of stream) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    } catch (error) {
      if (error instanceof APIUserAbortError) return;
      res.write(`data: ${JSON.stringify({ error: { message: error instanceof Error ? error.message : 'stream failed' } })}\n\n`);
    }
    res.end('data: [DONE]\n\n');
    return;
  }
  res.writeHead(404).end();
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address() as { port: number };
  console.log(`browser chat on http://127.0.0.1:${address.port}`);
});
