import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { subjectForClient } from '../../../src/identity/pairwise.ts';
import { ssfEventTypes } from '../../../src/signals/ssf/event-types.ts';
import { forReceiver } from '../../../src/signals/ssf/transmitter.ts';
import { secretClient } from '../../endpoints/fixture.ts';
import { testContext } from '../../helpers/storage.ts';
import { ssfFixture } from './fixture.ts';

// OIDC Core §8.1 for Shared Signals: a receiver registered with subject_type pairwise is told the
// person as its pairwise subject, never the local id (src/signals/ssf/transmitter.ts forReceiver).

const pairwiseReceiver = { client_id: 'receiver-b', subject_type: 'pairwise' as const, redirect_uris: ['https://b.example.com/cb'] };
const events = [ssfEventTypes.accountDisabled, ssfEventTypes.sessionRevoked, ssfEventTypes.breakGlassActivated, ssfEventTypes.mandateRevoked];

describe('Shared Signals to a pairwise receiver', () => {
  test('SETs name the person by the receiver\'s pairwise subject (a complex subject\'s user too); a public receiver gets the local id; break-glass events are not sent to it', async (t) => {
    const f = await ssfFixture(t);
    await f.apply({ clients: [secretClient('receiver-b', 'ssf:manage', { subject_type: 'pairwise', grant_types: ['client_credentials', 'authorization_code'], redirect_uris: ['https://b.example.com/cb'] })] });
    const client = (await f.ctx.clients.get('receiver-b'))!;
    assert.equal(client.metadata.subject_type, 'pairwise');
    const body = { delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: events };
    const publicStream = (await f.stream(body, 'receiver-a')).stream_id;
    const pairwiseStream = (await f.stream(body, 'receiver-b')).stream_id;
    f.clock.advance(1000);
    const local = 'user-4711';
    await f.ctx.audit.record({ type: 'user.disabled', requestId: 'r1', actor: 'admin-1', subject: local });
    await f.ctx.audit.record({ type: 'consent.revoked', requestId: 'r2', actor: local, subject: local, details: { grant_id: 'grant-1' } });
    await f.ctx.audit.record({ type: 'break_glass.activated', requestId: 'r3', actor: 'admin-1', subject: local, txn: 'bg-1' });
    await f.transmit();
    const rows = await f.ctx.storage.db.selectFrom('ssf_outbox').selectAll().execute();
    const of = (stream: unknown) => rows.filter((r) => r.stream_id === stream).map((r) => ({ type: r.event_type, claims: decodeJwt(r.set_jwt) }));
    const pseudonym = subjectForClient(f.ctx, client.metadata, local);

    const toPublic = of(publicStream);
    assert.deepEqual(toPublic.map((s) => s.type).sort(), [ssfEventTypes.accountDisabled, ssfEventTypes.breakGlassActivated, ssfEventTypes.sessionRevoked].sort());
    assert.deepEqual(toPublic.find((s) => s.type === ssfEventTypes.accountDisabled)!.claims.sub_id, { format: 'iss_sub', iss: f.issuer, sub: local });

    const toPairwise = of(pairwiseStream);
    assert.deepEqual(toPairwise.map((s) => s.type).sort(), [ssfEventTypes.accountDisabled, ssfEventTypes.sessionRevoked].sort(), 'no break-glass event');
    assert.deepEqual(toPairwise.find((s) => s.type === ssfEventTypes.accountDisabled)!.claims.sub_id, { format: 'iss_sub', iss: f.issuer, sub: pseudonym });
    const revoked = toPairwise.find((s) => s.type === ssfEventTypes.sessionRevoked)!.claims.sub_id as { user: { sub: string }; session: { id: string } };
    assert.equal(revoked.user.sub, pseudonym);
    assert.equal(revoked.session.id, 'grant-1');
    for (const s of toPairwise) assert.ok(!JSON.stringify(s.claims).includes(local), 'the local id appears nowhere in a SET to the pairwise receiver');
  });

  test('a pairwise stream that adds the person by its pairwise subject gets their events', async (t) => {
    const f = await ssfFixture(t, { env: { CLEARANCE_SSF_DEFAULT_SUBJECTS: 'NONE' } });
    await f.apply({ clients: [secretClient('receiver-b', 'ssf:manage', { subject_type: 'pairwise', grant_types: ['client_credentials', 'authorization_code'], redirect_uris: ['https://b.example.com/cb'] })] });
    const client = (await f.ctx.clients.get('receiver-b'))!;
    const id = (await f.stream({ delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [ssfEventTypes.accountDisabled] }, 'receiver-b')).stream_id;
    const added = await f.call('POST', '/ssf/subjects/add', { receiver: 'receiver-b', body: { stream_id: id, subject: { format: 'iss_sub', iss: f.issuer, sub: subjectForClient(f.ctx, client.metadata, 'user-1') } } });
    assert.ok(added.statusCode < 300, added.body);
    f.clock.advance(1000);
    await f.ctx.audit.record({ type: 'user.disabled', requestId: 'r1', actor: 'admin-1', subject: 'user-1' });
    await f.ctx.audit.record({ type: 'user.disabled', requestId: 'r2', actor: 'admin-1', subject: 'user-2' });
    await f.transmit();
    const rows = await f.ctx.storage.db.selectFrom('ssf_outbox').selectAll().where('stream_id', '=', String(id)).execute();
    assert.equal(rows.length, 1);
    assert.equal((decodeJwt(rows[0]!.set_jwt).sub_id as { sub: string }).sub, subjectForClient(f.ctx, client.metadata, 'user-1'));
  });

  test('forReceiver: a mandate\'s grantee is left out, a foreign issuer\'s subject kept, an unmappable receiver or a missing one gets nothing', async (t) => {
    const { ctx } = await testContext({ t });
    const mandate = { type: ssfEventTypes.mandateRevoked, subject: { format: 'opaque' as const, id: 'm-1' }, payload: { grantee: 'user-1', mandate: { id: 'm-1', v: 1 } } };
    assert.deepEqual(forReceiver(ctx, pairwiseReceiver, mandate)?.payload, { mandate: { id: 'm-1', v: 1 } });
    assert.equal(forReceiver(ctx, { ...pairwiseReceiver, subject_type: 'public' }, mandate), mandate);
    const foreign = { type: ssfEventTypes.accountDisabled, subject: { format: 'iss_sub' as const, iss: 'https://other.example.com', sub: 'x' }, payload: {} };
    assert.deepEqual(forReceiver(ctx, pairwiseReceiver, foreign)?.subject, foreign.subject);
    const person = { type: ssfEventTypes.accountDisabled, subject: { format: 'iss_sub' as const, iss: ctx.config.issuer, sub: 'user-1' }, payload: {} };
    assert.equal(forReceiver(ctx, { ...pairwiseReceiver, redirect_uris: ['https://a.example.com/cb', 'https://b.example.com/cb'] }, person), undefined);
    assert.equal(forReceiver(ctx, undefined, person), undefined);
  });
});
