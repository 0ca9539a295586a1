import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { leanRequest, LeanPool } from '../../bench/lean-http.ts';

/** The benchmarks' HTTP client reads every answer whole, whatever its framing, and reports failures. */
describe('the lean HTTP client of the load generator', () => {
  let server: Server;
  let origin: string;
  const seen: { path: string; body: string; type: string | undefined }[] = [];

  before(async () => {
    server = createServer(async (request: IncomingMessage, response) => {
      let body = '';
      for await (const chunk of request) body += chunk;
      seen.push({ path: request.url!, body, type: request.headers['content-type'] });
      if (request.url === '/chunked') {
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.write('first,');
        setTimeout(() => response.end('second'), 5);
      } else if (request.url === '/close') {
        request.socket.destroy();
      } else if (request.url === '/slow') {
        setTimeout(() => response.writeHead(201, { 'content-length': String(body.length) }).end(body), 20);
      } else {
        response.writeHead(400, { 'content-length': String(Buffer.byteLength(body)) }).end(body);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    origin = `http://127.0.0.1:${address.port}`;
  });
  after(() => server.close());

  it('sends the body and headers it was given, and reads a Content-Length answer with its status', async () => {
    const pool = new LeanPool(origin, 1);
    try {
      const answer = await pool.request(leanRequest(origin, '/echo', 'grant_type=x&ü=1', { 'content-type': 'application/x-www-form-urlencoded' }));
      assert.equal(answer.status, 400);
      assert.equal(answer.body.toString('utf8'), 'grant_type=x&ü=1');
      assert.deepEqual(seen.at(-1), { path: '/echo', body: 'grant_type=x&ü=1', type: 'application/x-www-form-urlencoded' });
    } finally {
      pool.close();
    }
  });

  it('reads a chunked answer that arrives in pieces', async () => {
    const pool = new LeanPool(origin, 1);
    try {
      const answer = await pool.request(leanRequest(origin, '/chunked', '', {}));
      assert.equal(answer.status, 200);
      assert.equal(answer.body.toString(), 'first,second');
    } finally {
      pool.close();
    }
  });

  it('queues requests beyond its connections and answers each one with its own body', async () => {
    const pool = new LeanPool(origin, 2);
    try {
      const answers = await Promise.all(Array.from({ length: 7 }, (_, i) => pool.request(leanRequest(origin, '/slow', `request-${i}`, {}))));
      assert.deepEqual(
        answers.map((a) => [a.status, a.body.toString()]),
        Array.from({ length: 7 }, (_, i) => [201, `request-${i}`]),
      );
    } finally {
      pool.close();
    }
  });

  it('opens all its connections before the first request when asked, and sends on them without opening more', async () => {
    const accepted: unknown[] = [];
    const count = (socket: unknown) => accepted.push(socket);
    server.on('connection', count);
    const pool = new LeanPool(origin, 3);
    try {
      await pool.open();
      // The server may see an accepted connection a turn after the client sees it connected.
      for (let i = 0; i < 50 && accepted.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(accepted.length, 3);
      const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => pool.request(leanRequest(origin, '/slow', `opened-${i}`, {}))));
      assert.deepEqual(answers.map((a) => a.body.toString()), Array.from({ length: 5 }, (_, i) => `opened-${i}`));
      assert.equal(accepted.length, 3);
    } finally {
      server.off('connection', count);
      pool.close();
    }
  });

  it('fails a request whose connection closes before the answer, and carries on with a new connection', async () => {
    const pool = new LeanPool(origin, 1);
    try {
      await assert.rejects(pool.request(leanRequest(origin, '/close', '', {})), /closed/);
      const answer = await pool.request(leanRequest(origin, '/echo', 'again', {}));
      assert.equal(answer.body.toString(), 'again');
    } finally {
      pool.close();
    }
  });
});
