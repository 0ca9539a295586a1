import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import { consoleClientId } from '../../../src/console/client.ts';
import { ssfEventTypes } from '../../../src/signals/ssf/event-types.ts';
import { pushDue } from '../../../src/signals/ssf/transmitter.ts';
import { formatProblem } from '../../../src/validation.ts';
import { ordersApi, secretClient } from '../../endpoints/fixture.ts';
import { pollStream, ssfFixture, type SsfFixture } from './fixture.ts';

// A receiver is a client in service allowed `ssf:manage` (docs/signals.md "Receivers and streams";
// docs/lifecycle.md: a pruned client's tokens end at once). Once apply's prune disabled the client,
// or its scope no longer allows ssf:manage, its streams get no SET: none is queued for it, and none
// that waited is pushed to it.

async function pruneClient(f: SsfFixture, clientId: string): Promise<void> {
  const clients = (await f.ctx.clients.list()).filter((c) => c.metadata.client_id !== consoleClientId && c.metadata.client_id !== clientId).map((c) => ({ ...c.metadata }));
  const { plan, problems } = await planApply(f.ctx, { clients });
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  await executeApply(f.ctx, plan, { actor: 'test:gitops', via: 'cli' }, { prune: true, force: true });
  assert.notEqual((await f.ctx.clients.get(clientId))?.disabledAt ?? null, null, `${clientId} is disabled`);
}

async function listener(t: TestContext): Promise<{ url: string; received: string[] }> {
  const received: string[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      received.push(Buffer.concat(chunks).toString('utf8'));
      response.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/events`, received };
}

const revokeOne = async (f: SsfFixture) => {
  const token = await f.accessToken('broker-1', { resource: ordersApi });
  assert.equal((await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } })).statusCode, 200);
};

describe('Shared Signals to a receiver no longer in service', () => {
  test('a receiver whose client was pruned gets no SET of events after it was disabled, while a receiver in service still does', async (t) => {
    const f = await ssfFixture(t);
    const pruned = (await f.stream(pollStream, 'receiver-a')).stream_id;
    const kept = (await f.stream(pollStream, 'receiver-b')).stream_id;
    await pruneClient(f, 'receiver-a');
    f.clock.advance(1000);
    await revokeOne(f);
    await f.transmit();
    const rows = await f.ctx.storage.db.selectFrom('ssf_outbox').select(['stream_id', 'event_type']).execute();
    assert.ok(rows.some((r) => r.stream_id === kept && r.event_type === ssfEventTypes.sessionRevoked), 'the receiver in service gets the SET');
    assert.deepEqual(rows.filter((r) => r.stream_id === pruned), [], 'no SET is queued for the disabled receiver');
  });

  test('a SET that waited for a receiver is not pushed to it once its client is disabled', async (t) => {
    const f = await ssfFixture(t);
    const r = await listener(t);
    await f.stream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: r.url }, events_requested: [ssfEventTypes.sessionRevoked] }, 'receiver-a');
    await revokeOne(f);
    await f.transmit();
    assert.equal((await f.ctx.storage.db.selectFrom('ssf_outbox').selectAll().where('status', '=', 'pending').execute()).length, 1, 'a SET waits');
    await pruneClient(f, 'receiver-a');
    await pushDue(f.ctx, f.streams);
    assert.deepEqual(r.received.map((body) => decodeJwt(body).aud), [], 'nothing is pushed to a disabled receiver');
    const settled = await f.ctx.storage.db.selectFrom('ssf_outbox').select(['status', 'last_error']).execute();
    assert.deepEqual(settled.map((row) => [row.status, row.last_error]), [['failed', 'the receiver is no longer a client in service allowed ssf:manage']]);
  });

  test('a client whose scope no longer allows ssf:manage is no receiver: its stream gets no SET', async (t) => {
    const f = await ssfFixture(t);
    const stream = (await f.stream(pollStream, 'receiver-a')).stream_id;
    await f.apply({ clients: [secretClient('receiver-a', 'order:create')] });
    f.clock.advance(1000);
    await revokeOne(f);
    await f.transmit();
    const rows = await f.ctx.storage.db.selectFrom('ssf_outbox').select(['stream_id']).where('stream_id', '=', String(stream)).execute();
    assert.deepEqual(rows, [], 'no SET for a client that may not manage streams');
  });
});
