import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { ssfEventTypes } from '../../../src/signals/ssf/event-types.ts';
import { pushDue, tailSealedLog } from '../../../src/signals/ssf/transmitter.ts';
import { testDialects } from '../../helpers/storage.ts';
import { ordersApi } from '../../endpoints/fixture.ts';
import { pollStream, ssfFixture, type SsfFixture } from './fixture.ts';

// The transmitter (src/signals/ssf/transmitter.ts): the sealed audit log in, one SET per stream
// that wants it out, pushed with retries (RFC 8935) — on both dialects, nodes racing included.

interface Received {
  status: number;
  body: string;
  headers: IncomingMessage['headers'];
}

/** A receiver on localhost answering each push with the next status of `answers` (then 202). */
async function receiver(t: TestContext, answers: (number | [number, string])[] = []): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const next = answers.shift() ?? 202;
      const [status, body] = Array.isArray(next) ? next : [next, ''];
      received.push({ status, body: Buffer.concat(chunks).toString('utf8'), headers: request.headers });
      response.writeHead(status, body ? { 'content-type': 'application/json' } : {}).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/events`, received };
}

const revokeOne = async (f: SsfFixture, client = 'broker-1') => {
  const token = await f.accessToken(client, { resource: ordersApi });
  assert.equal((await f.post('/revoke', { auth: f.basic(client), form: { token } })).statusCode, 200);
  return decodeJwt(token).jti as string;
};

const outbox = (f: SsfFixture) => f.ctx.storage.db.selectFrom('ssf_outbox').selectAll().orderBy('created_at').orderBy('jti').execute();

for (const dialect of testDialects()) {
  describe(`the Shared Signals transmitter on ${dialect.name}`, () => {
    test('queues one SET per stream that asked for the type and wants the subject; none for a stream made later, a disabled one, or another type', async (t) => {
      const f = await ssfFixture(t, { dialect });
      const a = (await f.stream(pollStream)).stream_id;
      const b = (await f.stream({ ...pollStream, events_requested: [ssfEventTypes.accountDisabled] }, 'receiver-b')).stream_id;
      const disabled = (await f.stream(pollStream, 'receiver-b')).stream_id as string;
      await f.call('POST', '/ssf/status', { receiver: 'receiver-b', body: { stream_id: disabled, status: 'disabled' } });
      const jti = await revokeOne(f);
      f.clock.advance(1000);
      await f.transmit();
      const late = (await f.stream(pollStream)).stream_id;
      await f.transmit();
      const rows = await outbox(f);
      assert.deepEqual(rows.map((r) => [r.stream_id, r.event_type]), [[a, ssfEventTypes.sessionRevoked]]);
      assert.ok(![b, disabled, late].includes(rows[0]!.stream_id));
      const claims = decodeJwt(rows[0]!.set_jwt);
      assert.equal((claims.sub_id as { session: { id: string } }).session.id, jti);
      await f.transmit();
      assert.equal((await outbox(f)).length, 1, 'each sealed event is read once');
    });

    test('two nodes tailing at once queue each event once', async (t) => {
      const f = await ssfFixture(t, { dialect });
      await f.stream(pollStream);
      for (let i = 0; i < 5; i++) await revokeOne(f);
      await f.seal();
      const runs = await Promise.all([tailSealedLog(f.ctx, f.streams), tailSealedLog(f.ctx, f.streams), tailSealedLog(f.ctx, f.streams)]);
      assert.equal(runs.filter((r) => r !== undefined && r.queued > 0).length, 1, JSON.stringify(runs));
      assert.equal((await outbox(f)).length, 5);
    });

    test('a stream whose default is NONE gets only the subjects added; a removed subject is never sent', async (t) => {
      const f = await ssfFixture(t, { dialect, env: { CLEARANCE_SSF_DEFAULT_SUBJECTS: 'NONE' } });
      const id = (await f.stream(pollStream)).stream_id as string;
      await revokeOne(f, 'broker-1');
      await f.transmit();
      assert.equal((await outbox(f)).length, 0);
      await f.call('POST', '/ssf/subjects/add', { body: { stream_id: id, subject: { format: 'iss_sub', iss: f.issuer, sub: 'desk-2' } } });
      await revokeOne(f, 'broker-1');
      await revokeOne(f, 'desk-2');
      await f.transmit();
      const rows = await outbox(f);
      assert.deepEqual(rows.map((r) => (decodeJwt(r.set_jwt).sub_id as { user: { sub: string } }).user.sub), ['desk-2']);
    });

    test('pushes with the agreed Authorization header; a 503 is retried with back-off and delivered once; a 400 fails for good with the receiver’s err', async (t) => {
      const f = await ssfFixture(t, { dialect });
      const r = await receiver(t, [503, 202, [400, JSON.stringify({ err: 'invalid_key', description: 'unknown kid' })]]);
      const stream = await f.stream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: r.url, authorization_header: 'Bearer shared-secret' }, events_requested: [ssfEventTypes.sessionRevoked] });
      const jti = await revokeOne(f);
      await f.transmit({ push: true });
      assert.equal(r.received.length, 1);
      assert.equal(r.received[0]!.headers.authorization, 'Bearer shared-secret');
      assert.equal(r.received[0]!.headers['content-type'], 'application/secevent+jwt');
      let [row] = await outbox(f);
      assert.deepEqual([row!.status, row!.attempts, Number(row!.last_status)], ['pending', 1, 503]);
      await pushDue(f.ctx, f.streams);
      assert.equal(r.received.length, 1, 'not before its back-off');
      f.clock.advance(1000);
      await pushDue(f.ctx, f.streams);
      assert.equal(r.received.length, 2);
      assert.equal(r.received[1]!.body, r.received[0]!.body, 'the same SET again');
      [row] = await outbox(f);
      assert.deepEqual([row!.status, row!.attempts], ['delivered', 2]);
      f.clock.advance(60_000);
      await pushDue(f.ctx, f.streams);
      assert.equal(r.received.length, 2, 'delivered once');

      await revokeOne(f);
      await f.transmit({ push: true });
      const failed = (await outbox(f)).find((x) => x.status !== 'delivered')!;
      assert.deepEqual([failed.status, failed.last_error], ['failed', 'invalid_key: unknown kid']);
      f.clock.advance(3_600_000);
      await pushDue(f.ctx, f.streams);
      assert.equal(r.received.length, 3, 'a 400 is not retried');
      assert.equal(decodeJwt(r.received[0]!.body).aud, 'receiver-a');
      assert.equal((decodeJwt(r.received[0]!.body).sub_id as { session: { id: string } }).session.id, jti);
      void stream;
    });

    test('a paused push stream waits and delivers when enabled again; an unreachable receiver is retried until the maximum age, then failed', async (t) => {
      const f = await ssfFixture(t, { dialect, env: { CLEARANCE_SSF_MAX_DELIVERY_AGE: '60' } });
      const r = await receiver(t);
      const id = (await f.stream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: r.url }, events_requested: [ssfEventTypes.sessionRevoked] })).stream_id as string;
      await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'paused' } });
      await revokeOne(f);
      await f.transmit({ push: true });
      assert.equal(r.received.length, 0);
      await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'enabled' } });
      await pushDue(f.ctx, f.streams);
      assert.equal(r.received.length, 1);

      const gone = (await f.stream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'http://127.0.0.1:1/nobody' }, events_requested: [ssfEventTypes.sessionRevoked] }, 'receiver-b')).stream_id;
      await revokeOne(f);
      await f.transmit({ push: true });
      const pending = (await outbox(f)).filter((x) => x.stream_id === gone);
      assert.deepEqual(pending.map((x) => x.status), ['pending']);
      assert.match(String(pending[0]!.last_error), /cannot reach/);
      f.clock.advance(61_000);
      await pushDue(f.ctx, f.streams);
      assert.deepEqual((await outbox(f)).filter((x) => x.stream_id === gone).map((x) => x.status), ['failed']);
    });
  });
}
