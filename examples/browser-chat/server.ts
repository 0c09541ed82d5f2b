/**
 * A browser chat that streams through a small server: the page never sees the team's virtual key; the server
 * forwards each message to creditgate's create-and-call-stream and relays the chunks as they arrive.
 *
 *   CREDITGATE_URL=http://localhost:8003 CREDITGATE_KEY=sk-... CREDITGATE_TEAM_ID=acme-support PORT=3000 npx tsx examples/browser-chat/server.ts
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';

const creditgate = process.env.CREDITGATE_URL ?? 'http://localhost:8003';
const key = process.env.CREDITGATE_KEY;
const teamId = process.env.CREDITGATE_TEAM_ID;
const page = await readFile(new URL('./index.html', import.meta.url));

const server = createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
    return;
  }
  if (req.method === 'POST' && req.url === '/chat') {
    let body = '';
    for await (const part of req) body += part;
    const { messages } = JSON.parse(body) as { messages: unknown[] };
    const upstream = await fetch(`${creditgate}/api/jobs/create-and-call-stream`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ team_id: teamId, job_type: 'browser_chat', messages }),
    });
    res.writeHead(upstream.status, { 'Content-Type': upstream.headers.get('content-type') ?? 'text/plain', 'Cache-Control': 'no-cache' });
    // Relayed as it arrives: the browser sees each chunk as soon as creditgate sends it.
    if (upstream.body) Readable.fromWeb(upstream.body as never).pipe(res);
    else res.end();
    return;
  }
  res.writeHead(404).end();
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const address = server.address() as { port: number };
  console.log(`browser chat on http://127.0.0.1:${address.port}`);
});
