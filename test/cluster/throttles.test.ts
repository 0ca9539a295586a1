import assert from 'node:assert/strict';
import type { Cluster, Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import type { AuthAttempt } from '../../src/clients/authentication/throttle.ts';
import { serveThrottles, throttleRelays, type Channel } from '../../src/cluster/throttles.ts';

/**
 * A cluster in one process: a primary's `serveThrottles` and workers' `throttleRelays`, each
 * message delivered on a later turn of the event loop, in order per direction, as the IPC channel
 * delivers them (and JSON-copied, as it serializes them).
 */
function fakeCluster(clock: ManualClock) {
  const cluster = new EventEmitter() as EventEmitter & { workers: Record<number, Worker> };
  cluster.workers = {};
  const service = serveThrottles(cluster as unknown as Cluster, clock);
  let nextId = 1;
  const copy = (message: unknown) => JSON.parse(JSON.stringify(message)) as unknown;
  return {
    service,
    /** A new worker, welcomed with the history as the primary does when it says hello. */
    async join() {
      const id = nextId++;
      const toWorker = new EventEmitter();
      let connected = true;
      const worker = {
        id,
        isConnected: () => connected,
        send: (message: unknown) => void setImmediate(() => toWorker.emit('message', copy(message))),
      } as unknown as Worker;
      const channel: Channel = {
        send: (message) => {
          if (!connected) throw new Error('channel closed');
          setImmediate(() => cluster.emit('message', worker, copy(message)));
        },
        on: (_event, listener) => toWorker.on('message', listener),
        get connected() {
          return connected;
        },
      };
      const relays = throttleRelays(channel, clock);
      cluster.workers[id] = worker;
      service.welcome(worker);
      await turns();
      return {
        ...relays,
        disconnect() {
          connected = false;
          delete cluster.workers[id];
        },
      };
    },
  };
}

/** Lets the messages in flight arrive. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

const guesser: AuthAttempt = { address: '203.0.113.7', clientId: 'desk-app', secret: true };

test('parallel wrong secrets spread over three workers get the one node limit of 401s, the rest 429', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const workers = [await node.join(), await node.join(), await node.join()];
  const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) => workers[i % 3]!.clientAuthentication.settle(guesser, 'secret_guess')));
  // Counter 2 (10 failures naming a client from one source per 60 s), counted once for the node:
  // per-worker counters would have let 30 through.
  assert.equal(outcomes.filter((refusal) => refusal === undefined).length, 10);
  assert.equal(outcomes.filter((refusal) => refusal !== undefined).length, 20);
});

test('a worker refuses before any work once failures counted through another worker reach the limit', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const [a, b] = [await node.join(), await node.join()];
  for (let i = 0; i < 10; i++) assert.equal(await a.clientAuthentication.settle(guesser, 'secret_guess'), undefined);
  await turns();
  assert.ok(await b.clientAuthentication.check(guesser), 'the other worker’s copy refuses at check');
  clock.advance(61_000);
  assert.equal(await b.clientAuthentication.check(guesser), undefined, 'and lets it try again once the window has passed');
});

test('a right guess from a source over its limit is refused by every worker, and a clean source is not', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const [a, b] = [await node.join(), await node.join()];
  for (let i = 0; i < 10; i++) await a.clientAuthentication.settle(guesser, 'secret_guess');
  await turns();
  assert.ok(await b.clientAuthentication.settle(guesser, 'success'), 'a source over its limit must not learn that a guess was right');
  assert.equal(await b.clientAuthentication.settle({ address: '198.51.100.1', clientId: 'desk-app', secret: true }, 'success'), undefined);
});

test('a worker that starts later is told the failures of the window before it serves', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const first = await node.join();
  for (let i = 0; i < 10; i++) await first.clientAuthentication.settle(guesser, 'secret_guess');
  first.disconnect(); // it died
  const restarted = await node.join();
  assert.ok(await restarted.clientAuthentication.check(guesser));
  assert.ok(await restarted.clientAuthentication.settle(guesser, 'success'));
});

test('password logins reserve and refund on the node’s counters, whichever worker serves them', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const [a, b] = [await node.join(), await node.join()];
  const address = '192.0.2.10';
  // 5 attempts per account per 5 minutes (src/identity/login-throttle.ts), across both workers.
  const reservations = await Promise.all(Array.from({ length: 7 }, (_, i) => (i % 2 ? a : b).login.reserve('alice', address)));
  assert.equal(reservations.filter((r) => r.granted).length, 5);
  const refused = reservations.find((r) => !r.granted);
  assert.ok(refused && !refused.granted && refused.retryAfterMs > 0);
  // A success refunds its own count, through whichever worker served it.
  const granted = reservations.find((r) => r.granted);
  assert.ok(granted?.granted);
  await granted.refund();
  await turns();
  assert.equal((await a.login.reserve('alice', address)).granted, true);
  assert.equal((await b.login.reserve('alice', address)).granted, false);
});

test('a worker that cannot reach the primary refuses: 429 for a client, throttled for a login', async () => {
  const clock = new ManualClock();
  const node = fakeCluster(clock);
  const worker = await node.join();
  worker.disconnect();
  assert.match((await worker.clientAuthentication.settle(guesser, 'failure'))?.reason ?? '', /did not answer/);
  assert.equal((await worker.login.reserve('alice', '192.0.2.10')).granted, false);
});
