import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { ssfEventTypes, supportedEventTypes } from '../../../src/signals/ssf/event-types.ts';
import { maxStreamsPerClient } from '../../../src/signals/ssf/streams.ts';
import { assertOAuthError, ordersApi } from '../../endpoints/fixture.ts';
import { pollStream, ssfFixture } from './fixture.ts';

// OpenID Shared Signals Framework 1.0 §7–8 over HTTP (docs/signals.md): the transmitter's
// metadata, and a receiver managing its own streams with a token for <issuer>/ssf.

const pushStream = (url = 'http://127.0.0.1:9/ssf') => ({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: url, authorization_header: 'Bearer receiver-secret' }, events_requested: [ssfEventTypes.sessionRevoked, 'urn:example:unknown'], description: 'surveillance' });

describe('the Shared Signals API', () => {
  test('publishes the transmitter metadata at /.well-known/ssf-configuration, without a token', async (t) => {
    const f = await ssfFixture(t);
    const response = await f.inject({ method: 'GET', url: '/.well-known/ssf-configuration' });
    assert.equal(response.statusCode, 200, response.body);
    const metadata = response.json();
    assert.equal(metadata.issuer, f.issuer);
    assert.equal(metadata.jwks_uri, `${f.issuer}/jwks`);
    assert.deepEqual(metadata.delivery_methods_supported, ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936']);
    assert.equal(metadata.configuration_endpoint, `${f.issuer}/ssf/streams`);
    for (const member of ['status_endpoint', 'add_subject_endpoint', 'remove_subject_endpoint', 'verification_endpoint']) assert.match(metadata[member], /^http/);
    assert.equal(metadata.default_subjects, 'ALL');
    assert.ok(metadata.events_supported.includes(ssfEventTypes.sessionRevoked));
  });

  test('needs a token for <issuer>/ssf with ssf:manage: none is 401, another audience’s 401 invalid_token', async (t) => {
    const f = await ssfFixture(t);
    assertOAuthError(await f.call('GET', '/ssf/streams', { token: '' }), 401, 'invalid_token');
    const other = await f.accessToken('broker-1', { resource: ordersApi });
    const response = await f.call('GET', '/ssf/streams', { token: other });
    assertOAuthError(response, 401, 'invalid_token');
    assert.match(String(response.headers['www-authenticate']), /Bearer/);
  });

  test('creates a push stream (201) with what Clearance delivers of what was asked, and never shows the authorization header again', async (t) => {
    const f = await ssfFixture(t);
    const stream = await f.stream(pushStream());
    assert.match(String(stream.stream_id), /^[0-9a-f-]{36}$/);
    assert.equal(stream.iss, f.issuer);
    assert.equal(stream.aud, 'receiver-a');
    assert.deepEqual(stream.delivery, { method: 'urn:ietf:rfc:8935', endpoint_url: 'http://127.0.0.1:9/ssf' });
    assert.deepEqual(stream.events_requested, [ssfEventTypes.sessionRevoked, 'urn:example:unknown']);
    assert.deepEqual(stream.events_delivered, [ssfEventTypes.sessionRevoked]);
    assert.deepEqual(stream.events_supported, supportedEventTypes);
    const stored = await f.ctx.storage.db.selectFrom('ssf_streams').select('authorization_header').executeTakeFirstOrThrow();
    assert.doesNotMatch(String(stored.authorization_header), /receiver-secret/, 'sealed at rest');
    const read = await f.call('GET', `/ssf/streams?stream_id=${stream.stream_id}`);
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(read.headers['cache-control'], 'no-store');
    assert.doesNotMatch(read.body, /receiver-secret/);
  });

  test('creates a poll stream whose endpoint Clearance gives', async (t) => {
    const f = await ssfFixture(t);
    const stream = await f.stream(pollStream);
    assert.deepEqual(stream.delivery, { method: 'urn:ietf:rfc:8936', endpoint_url: `${f.issuer}/ssf/poll/${stream.stream_id}` });
  });

  test('refuses a stream configuration it cannot honour with 400 invalid_request naming the member', async (t) => {
    const f = await ssfFixture(t, { env: { CLEARANCE_SSF_ALLOW_PRIVATE_NETWORK: 'false' } });
    for (const [body, message] of [
      [{}, /delivery is required/],
      [{ delivery: { method: 'urn:example:smoke-signals' } }, /delivery.method must be/],
      [{ delivery: { method: 'urn:ietf:rfc:8935' } }, /endpoint_url is required/],
      [{ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'ftp://receiver.example.com/ssf' } }, /not https/],
      [{ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'http://127.0.0.1:9/ssf' } }, /allow_private_network|not https/],
      [{ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'https://receiver.example.com/ssf', authorization_header: 'a\nb' } }, /authorization_header/],
      [{ delivery: { method: 'urn:ietf:rfc:8936', endpoint_url: 'https://x.example.com' } }, /given by Clearance/],
      [{ ...pollStream, events_requested: 'all' }, /events_requested is an array/],
      [{ ...pollStream, stream_id: 'mine' }, /stream_id is given by Clearance/],
      [{ ...pollStream, colour: 'blue' }, /unknown member colour/],
      [[], /JSON object/],
    ] as const) {
      const response = await f.call('POST', '/ssf/streams', { body });
      const error = assertOAuthError(response, 400, 'invalid_request', JSON.stringify(body));
      assert.match(String(error.error_description), message, JSON.stringify(body));
    }
    assert.equal((await f.ctx.storage.db.selectFrom('ssf_streams').selectAll().execute()).length, 0);
  });

  test('shows a receiver only its own streams: another’s is 404 to read, change, pause, verify, poll or delete', async (t) => {
    const f = await ssfFixture(t);
    const mine = await f.stream(pollStream);
    await f.stream(pollStream, 'receiver-b');
    const listed = await f.call('GET', '/ssf/streams');
    assert.deepEqual(listed.json().map((s: { stream_id: string }) => s.stream_id), [mine.stream_id]);
    const id = mine.stream_id as string;
    const asB = { receiver: 'receiver-b' };
    assertOAuthError(await f.call('GET', `/ssf/streams?stream_id=${id}`, asB), 404, 'not_found');
    assertOAuthError(await f.call('PATCH', '/ssf/streams', { ...asB, body: { stream_id: id, description: 'mine now' } }), 404, 'not_found');
    assertOAuthError(await f.call('POST', '/ssf/status', { ...asB, body: { stream_id: id, status: 'disabled' } }), 404, 'not_found');
    assertOAuthError(await f.call('POST', '/ssf/verify', { ...asB, body: { stream_id: id } }), 404, 'not_found');
    assertOAuthError(await f.call('POST', `/ssf/poll/${id}`, { ...asB, body: {} }), 404, 'not_found');
    assertOAuthError(await f.call('DELETE', `/ssf/streams?stream_id=${id}`, asB), 404, 'not_found');
    assertOAuthError(await f.call('GET', '/ssf/streams?stream_id=nope'), 404, 'not_found');
    assert.equal((await f.call('GET', `/ssf/status?stream_id=${id}`)).json().status, 'enabled', 'untouched');
  });

  test('updates what PATCH names and replaces with PUT; deletes with 204', async (t) => {
    const f = await ssfFixture(t);
    const stream = await f.stream({ ...pollStream, description: 'first' });
    const patched = await f.call('PATCH', '/ssf/streams', { body: { stream_id: stream.stream_id, events_requested: [ssfEventTypes.accountDisabled] } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.deepEqual(patched.json().events_delivered, [ssfEventTypes.accountDisabled]);
    assert.equal(patched.json().description, 'first');
    const replaced = await f.call('PUT', '/ssf/streams', { body: { stream_id: stream.stream_id, ...pushStream('http://127.0.0.1:9/other') } });
    assert.equal(replaced.statusCode, 200, replaced.body);
    assert.equal(replaced.json().delivery.endpoint_url, 'http://127.0.0.1:9/other');
    assertOAuthError(await f.call('PUT', '/ssf/streams', { body: { stream_id: stream.stream_id } }), 400, 'invalid_request');
    const deleted = await f.call('DELETE', `/ssf/streams?stream_id=${stream.stream_id}`);
    assert.equal(deleted.statusCode, 204);
    assertOAuthError(await f.call('GET', `/ssf/streams?stream_id=${stream.stream_id}`), 404, 'not_found');
  });

  test(`holds at most ${maxStreamsPerClient} streams per receiver (409)`, async (t) => {
    const f = await ssfFixture(t);
    for (let i = 0; i < maxStreamsPerClient; i++) await f.stream(pollStream);
    assertOAuthError(await f.call('POST', '/ssf/streams', { body: pollStream }), 409, 'invalid_request');
  });

  test('reads and sets the status; a paused poll stream keeps its SETs and returns none, a disabled one drops them', async (t) => {
    const f = await ssfFixture(t);
    const stream = await f.stream(pollStream);
    const id = stream.stream_id as string;
    assertOAuthError(await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'asleep' } }), 400, 'invalid_request');
    const paused = await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'paused', reason: 'maintenance' } });
    assert.deepEqual(paused.json(), { stream_id: id, status: 'paused', reason: 'maintenance' });
    await f.call('POST', '/ssf/verify', { body: { stream_id: id, state: 's1' } });
    assert.deepEqual((await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json(), { sets: {}, moreAvailable: false });
    await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'enabled' } });
    assert.equal(Object.keys((await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json().sets).length, 1, 'kept while paused');
    await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'disabled' } });
    assertOAuthError(await f.call('POST', '/ssf/verify', { body: { stream_id: id } }), 409, 'invalid_request');
    await f.call('POST', '/ssf/status', { body: { stream_id: id, status: 'enabled' } });
    assert.deepEqual((await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json().sets, {}, 'dropped when disabled');
  });

  test('a verification request yields a signed verification SET with the receiver’s state; poll re-delivers until acknowledged', async (t) => {
    const f = await ssfFixture(t);
    const stream = await f.stream(pollStream);
    const id = stream.stream_id as string;
    const verify = await f.call('POST', '/ssf/verify', { body: { stream_id: id, state: 'abc-123' } });
    assert.equal(verify.statusCode, 204, verify.body);
    const first = (await f.call('POST', `/ssf/poll/${id}`, { body: { returnImmediately: true } })).json();
    const [jti, set] = Object.entries(first.sets as Record<string, string>)[0]!;
    assert.equal(decodeProtectedHeader(set!).typ, 'secevent+jwt');
    const claims = decodeJwt(set!);
    assert.equal(claims.jti, jti);
    assert.equal(claims.iss, f.issuer);
    assert.equal(claims.aud, 'receiver-a');
    assert.deepEqual(claims.sub_id, { format: 'opaque', id });
    assert.deepEqual(claims.events, { [ssfEventTypes.verification]: { state: 'abc-123' } });
    assert.deepEqual(Object.keys((await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json().sets), [jti], 'not acknowledged: sent again');
    assert.deepEqual((await f.call('POST', `/ssf/poll/${id}`, { body: { ack: [jti] } })).json(), { sets: {}, moreAvailable: false });
    const row = await f.ctx.storage.db.selectFrom('ssf_outbox').select('status').where('jti', '=', jti!).executeTakeFirstOrThrow();
    assert.equal(row.status, 'acknowledged');
  });

  test('limits verification requests per stream: the sixth within a minute is 429 with Retry-After and queues nothing', async (t) => {
    const f = await ssfFixture(t);
    const id = (await f.stream(pollStream)).stream_id as string;
    const other = (await f.stream(pollStream)).stream_id as string;
    const queued = async (stream: string) => (await f.ctx.storage.db.selectFrom('ssf_outbox').select('jti').where('stream_id', '=', stream).execute()).length;
    for (let i = 0; i < 5; i++) assert.equal((await f.call('POST', '/ssf/verify', { body: { stream_id: id, state: `s${i}` } })).statusCode, 204);
    assert.equal(await queued(id), 5);

    // SSF 1.0 §8.1.4.2 / RFC 6585 §4: the transmitter may rate-limit verification; the answer says when to retry.
    const refused = await f.call('POST', '/ssf/verify', { body: { stream_id: id, state: 's5' } });
    assertOAuthError(refused, 429, 'temporarily_unavailable');
    assert.match(String(refused.headers['retry-after']), /^[1-9][0-9]*$/);
    assert.ok(Number(refused.headers['retry-after']) <= 60, String(refused.headers['retry-after']));
    assert.equal(refused.headers['ratelimit-policy'], '"stream";q=5;w=60');
    assert.equal(await queued(id), 5, 'the refused request queued no SET');

    assert.equal((await f.call('POST', '/ssf/verify', { body: { stream_id: other } })).statusCode, 204, 'another stream has its own limit');
    f.clock.advance(60_000);
    assert.equal((await f.call('POST', '/ssf/verify', { body: { stream_id: id } })).statusCode, 204, 'a minute later it is allowed again');
    assert.equal(await queued(id), 6);
  });

  test('poll takes maxEvents and setErrs, and refuses a malformed request with 400', async (t) => {
    const f = await ssfFixture(t);
    const id = (await f.stream(pollStream)).stream_id as string;
    for (const state of ['a', 'b', 'c']) await f.call('POST', '/ssf/verify', { body: { stream_id: id, state } });
    const page = (await f.call('POST', `/ssf/poll/${id}`, { body: { maxEvents: 2 } })).json();
    assert.equal(Object.keys(page.sets).length, 2);
    assert.equal(page.moreAvailable, true);
    const [refused] = Object.keys(page.sets);
    const after = (await f.call('POST', `/ssf/poll/${id}`, { body: { setErrs: { [refused!]: { err: 'invalid_request', description: 'no thanks' } } } })).json();
    assert.equal(Object.keys(after.sets).length, 2, 'the refused one is not sent again');
    assert.ok(!(refused! in after.sets));
    const row = await f.ctx.storage.db.selectFrom('ssf_outbox').select(['status', 'last_error']).where('jti', '=', refused!).executeTakeFirstOrThrow();
    assert.deepEqual({ ...row }, { status: 'failed', last_error: 'invalid_request: no thanks' });
    for (const body of [{ maxEvents: -1 }, { ack: 'x' }, { setErrs: { a: 'b' } }, { returnImmediately: 'yes' }, { other: 1 }]) {
      assertOAuthError(await f.call('POST', `/ssf/poll/${id}`, { body }), 400, 'invalid_request', JSON.stringify(body));
    }
  });

  test('a revoked token becomes a session-revoked SET for a stream that asked for it; a removed subject gets none', async (t) => {
    const f = await ssfFixture(t);
    const id = (await f.stream(pollStream)).stream_id as string;
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal((await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } })).statusCode, 200);
    await f.transmit();
    const sets = Object.values((await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json().sets as Record<string, string>);
    assert.equal(sets.length, 1);
    const claims = decodeJwt(sets[0]!);
    const event = (claims.events as Record<string, Record<string, unknown>>)[ssfEventTypes.sessionRevoked]!;
    assert.equal(event.initiating_entity, 'user');
    assert.equal(typeof event.event_timestamp, 'number');
    assert.deepEqual(claims.sub_id, { format: 'complex', user: { format: 'iss_sub', iss: f.issuer, sub: 'broker-1' }, session: { format: 'opaque', id: decodeJwt(token).jti } });
    assert.doesNotMatch(sets[0]!, new RegExp(token.split('.')[2]!), 'never the token');

    const removed = await f.call('POST', '/ssf/subjects/remove', { body: { stream_id: id, subject: { format: 'iss_sub', iss: f.issuer, sub: 'broker-1' } } });
    assert.equal(removed.statusCode, 204, removed.body);
    assertOAuthError(await f.call('POST', '/ssf/subjects/add', { body: { stream_id: id, subject: { format: 'phone', number: '1' } } }), 400, 'invalid_request');
    const again = await f.accessToken('broker-1', { resource: ordersApi });
    await f.post('/revoke', { auth: f.basic('broker-1'), form: { token: again } });
    await f.transmit();
    const all = (await f.call('POST', `/ssf/poll/${id}`, { body: {} })).json().sets;
    assert.equal(Object.keys(all).length, 1, 'only the first, not yet acknowledged');
    const added = await f.call('POST', '/ssf/subjects/add', { body: { stream_id: id, subject: { format: 'iss_sub', iss: f.issuer, sub: 'broker-1' } } });
    assert.equal(added.statusCode, 200, added.body);
  });
});
