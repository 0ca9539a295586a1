import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { alternate, loadTokenEndpoint, meanLoadFigures, palindrome, type ServerProcess } from '../../bench/harness.ts';

/**
 * The load on /token warms the server up before it measures, and counts only what it measured.
 * The fake server's "CPU" is the number of requests it has answered, so a line whose CPU per
 * request is exactly 1000 µs (1 "ms" per request) counted no request of the warm-up.
 */
describe('the benchmarks load on the token endpoint', () => {
  let server: Server;
  let origin: string;
  let status = 200;
  const bodies: string[] = [];

  before(async () => {
    server = createServer(async (request, response) => {
      let body = '';
      for await (const chunk of request) body += chunk;
      bodies.push(body);
      response.writeHead(status, { 'content-length': '2' }).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => server.close());

  /** The fake server process; `readings` are the answers counted each time the load read its "CPU". */
  const fake = (readings: number[]): ServerProcess => ({
    issuer: origin,
    serverCpuMs: () => readings[readings.push(bodies.length) - 1]!,
    dataDir: '',
    env: {},
    child: undefined as never,
    stop: async () => {},
  });
  const options = (warmupSeconds: number) => ({
    connections: 2,
    seconds: 0.3,
    cryptoMs: 1,
    aheadSeconds: 0.3,
    maxAhead: 50,
    warmupSeconds,
    make: (i: number) => ({ body: `request=${i}` }),
  });

  it('sends a warm-up first and leaves its requests out of the line', async () => {
    bodies.length = 0;
    const readings: number[] = [];
    const line = await loadTokenEndpoint('warm', fake(readings), options(0.3));
    const [before, after] = readings;
    assert.ok(before! > 0, 'requests were answered before the measured load: the warm-up');
    assert.ok(after! > before!);
    // One answer per measured request: none of the warm-up's is in the line.
    assert.equal(line.server_cpu_us_per_req, 1000);
  });

  it('uses each request made ahead once, the warm-up taking the first ones', async () => {
    bodies.length = 0;
    await loadTokenEndpoint('warm', fake([]), options(0.2));
    const numbers = bodies.map((b) => Number(b.split('=')[1])).sort((a, b) => a - b);
    assert.deepEqual(numbers, numbers.map((_, i) => i));
  });

  it('counts every request when the scenario asks for no warm-up', async () => {
    bodies.length = 0;
    const readings: number[] = [];
    const line = await loadTokenEndpoint('cold', fake(readings), options(0));
    assert.equal(readings[0], 0);
    assert.equal(line.server_cpu_us_per_req, 1000);
  });

  it('stops when a request of the warm-up fails, as a measured one does', async () => {
    status = 500;
    try {
      await assert.rejects(loadTokenEndpoint('warm', fake([]), options(0.2)), /warm-up of \/token: \d+ of \d+ requests failed/);
    } finally {
      status = 200;
    }
  });
});

/** Runs compared in one scenario take turns, so that a machine that drifts weighs on each alike. */
describe('the benchmarks runs in turn', () => {
  const recorder = () => {
    const order: string[] = [];
    const run = (name: string, values: number[]) => async () => {
      order.push(name);
      return { scenario: name, rps: values[order.filter((n) => n === name).length - 1]! };
    };
    return { order, run };
  };

  it('runs each of several twice, in order and then in reverse, and averages each one\'s two results', async () => {
    const { order, run } = recorder();
    const means = await palindrome([run('off', [100, 200]), run('on', [10, 30]), run('redis', [1, 2])]);
    assert.deepEqual(order, ['off', 'on', 'redis', 'redis', 'on', 'off']);
    assert.deepEqual(means.map((mean) => mean('rps')), [150, 20, 1.5]);
  });

  it('reports a load\'s figures as the means of its runs, rounded as a single line is', async () => {
    const runs = [1000, 2001.123].map((rps, i) => ({ scenario: 'x', rps, p50_ms: 1, p99_ms: 3 + i, server_cpu_us_per_req: 400 + i * 0.16, crypto_us_per_req: 120, load_cpu_us_per_req: 30 }));
    let turn = 0;
    const [mean] = await palindrome([async () => runs[turn++]!]);
    assert.deepEqual(meanLoadFigures(mean!), { rps: 1500.56, p50_ms: 1, p99_ms: 3.5, server_cpu_us_per_req: 400.1, crypto_us_per_req: 120, load_cpu_us_per_req: 30 });
  });

  it('runs two as A B B A', async () => {
    const { order, run } = recorder();
    const { a, b } = await alternate(run('a', [4, 6]), run('b', [1, 3]));
    assert.deepEqual(order, ['a', 'b', 'b', 'a']);
    assert.equal(a('rps'), 5);
    assert.equal(b('rps'), 2);
  });
});
