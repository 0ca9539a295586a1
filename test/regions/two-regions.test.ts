import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { regionSubject } from '../../src/identity/pairwise.ts';
import { euBrokerLei, euIssuer, euOrdersApi, exchangeAt, introspectAt, regionsDatabaseUrl, secondTrader, twoRegions, usHop, usIssuer, usSettlementApi } from '../helpers/regions.ts';

// The two-region topology of docs/privacy.md "Regions": eu and us, two Clearance instances on two
// PostgreSQL databases, partners of each other. A person's data and audit stay home; the
// cross-region hop goes through token exchange with a per-region pseudonym; introspection answers
// only resource servers of the token's region.

const skip = regionsDatabaseUrl ? false : 'TEST_DATABASE_URL is not set: the two regions need a PostgreSQL server to create their databases on';

describe('two regions (eu, us), each with its own database', { skip }, () => {
  test("a person's data and audit stay in eu; the hop to us carries their us pseudonym; us exchanges it keeping act and txn", async (t) => {
    const { eu, us, person, orderToken } = await twoRegions(t);
    const pseudonym = regionSubject(eu.f.ctx, 'us', person.userId);

    // eu: the desk backend exchanges Alice's order token for the hop to us (RFC 8693).
    const hop = await exchangeAt(eu, 'eu-desk-backend', orderToken, usHop);
    assert.equal(hop.statusCode, 200, hop.body);
    const hopToken = hop.json().access_token as string;
    const hopClaims = decodeJwt(hopToken);
    const first = decodeJwt(orderToken);
    assert.equal(first.sub, person.userId, 'at home, the local subject');
    assert.equal(hopClaims.sub, pseudonym, 'across, the per-region pseudonym');
    assert.notEqual(hopClaims.sub, person.userId);
    assert.equal(hopClaims.aud, usIssuer);
    assert.equal(hopClaims.iss, euIssuer);
    assert.deepEqual(hopClaims.act, { sub: 'eu-desk-backend' });
    assert.equal(hopClaims.txn, first.txn ?? hopClaims.txn);
    assert.equal(hopClaims.origin_lei, euBrokerLei, 'the firm, for us\'s data residency');
    assert.equal(hopClaims.origin_person, undefined);
    // eu's own log records whom the pseudonym stands for: it stays in eu.
    const exchanged = (await eu.f.auditEvents('token.exchanged')).at(-1)! as StoredAuditEvent;
    assert.equal(exchanged.subject, pseudonym);
    assert.deepEqual(exchanged.details!.region_crossing, { from: 'eu', to: 'us', local_subject: person.userId });

    // us: its gateway exchanges eu's token (a partner's, under the clearance-eu trust profile) for its settlement API.
    const settled = await exchangeAt(us, 'us-gateway', hopToken, usSettlementApi);
    assert.equal(settled.statusCode, 200, settled.body);
    const usClaims = decodeJwt(settled.json().access_token as string);
    assert.equal(usClaims.iss, usIssuer);
    assert.equal(usClaims.sub, pseudonym);
    assert.equal(usClaims.aud, usSettlementApi);
    assert.equal(usClaims.txn, hopClaims.txn, 'the txn carries over');
    // eu's actor is named with eu's issuer (a partner's actors always are: its client ids never pass for ours).
    assert.deepEqual(usClaims.act, { sub: 'us-gateway', act: { sub: 'eu-desk-backend', iss: euIssuer } }, 'the act chain carries over, newest outermost');
    assert.equal(usClaims.origin_iss, euIssuer);
    assert.equal(usClaims.origin_lei, euBrokerLei);
    const answer = await introspectAt(us, 'us-settlement-rs', settled.json().access_token as string);
    assert.equal(answer.active, true);
    assert.equal(answer.sub, pseudonym);

    // No row of any us table, its audit log included, names Alice: not her id, name, e-mail or username.
    const personal = [person.userId, person.name, person.email, 'alice@', '"alice"'];
    assert.deepEqual(await us.scan(personal), [], 'us holds nothing of the person');
    assert.ok((await us.scan([pseudonym])).some((hit) => hit.startsWith('audit_events:')), 'us audits the pseudonym');
    const home = await eu.scan([person.userId, person.email]);
    assert.ok(home.includes(`users: ${person.userId}`) && home.includes(`users: ${person.email}`), 'the scan sees what eu holds');
    assert.ok(home.includes(`audit_events: ${person.userId}`), "eu's audit names her");
  });

  test("introspection answers only resource servers of the token's region (RFC 7662 §2.2)", async (t) => {
    const { eu, us, orderToken } = await twoRegions(t);
    assert.equal((await introspectAt(eu, 'eu-orders-rs', orderToken)).active, true, "eu's order API, region eu");
    // us-surveillance introspects for a us resource server; listed on eu's order API by mistake, it still learns nothing.
    assert.deepEqual(await introspectAt(eu, 'us-surveillance', orderToken), { active: false });
    const refused = (await eu.f.auditEvents('introspection.refused')).at(-1)!;
    assert.equal(refused.client, 'us-surveillance');
    assert.equal(refused.details!.reason, 'other_region');
    assert.equal(refused.details!.region, 'eu');
    assert.equal(refused.details!.caller_region, 'us');
    // At us, eu's token is not one of its own: inactive to every caller.
    assert.deepEqual(await introspectAt(us, 'us-settlement-rs', orderToken), { active: false });
  });

  test('a token about a person goes to the other region only as a pseudonym: no route carries the local id', async (t) => {
    const { eu, person, orderToken } = await twoRegions(t);
    const hop = decodeJwt((await exchangeAt(eu, 'eu-desk-backend', orderToken, usHop)).json().access_token as string);
    // The order API's own token (same region) keeps the local subject for eu's policy and audit.
    const home = await exchangeAt(eu, 'eu-desk-backend', orderToken, euOrdersApi);
    assert.equal(home.statusCode, 200, home.body);
    assert.equal(decodeJwt(home.json().access_token as string).sub, person.userId);
    assert.ok(!JSON.stringify(hop).includes(person.userId));
  });

  test('a person acting (actor_token) crosses only as their pseudonym, at this hop and nested; us holds nothing of them', async (t) => {
    const { eu, us, person, orderToken } = await twoRegions(t);
    const bob = await secondTrader(eu);
    const bobThere = regionSubject(eu.f.ctx, 'us', bob.person.userId);

    // Bob's token, issued to the desk backend, is this hop's actor: in us he is his pseudonym.
    const acted = await exchangeAt(eu, 'eu-desk-backend', orderToken, usHop, bob.backendToken);
    assert.equal(acted.statusCode, 200, acted.body);
    const actedClaims = decodeJwt(acted.json().access_token as string);
    assert.equal(actedClaims.sub, regionSubject(eu.f.ctx, 'us', person.userId));
    assert.deepEqual(actedClaims.act, { sub: bobThere });
    // eu's own record keeps who acted (its log stays in eu).
    const exchanged = (await eu.f.auditEvents('token.exchanged')).at(-1)! as StoredAuditEvent;
    assert.deepEqual(exchanged.details!.act_chain, [bob.person.userId]);

    // At home Bob acts under his local id; when the desk backend takes that token across, the
    // nested actor is his pseudonym, the client id stays.
    const home = await exchangeAt(eu, 'eu-desk-backend', orderToken, euOrdersApi, bob.backendToken);
    assert.equal(home.statusCode, 200, home.body);
    assert.deepEqual(decodeJwt(home.json().access_token as string).act, { sub: bob.person.userId });
    const nested = await exchangeAt(eu, 'eu-desk-backend', home.json().access_token as string, usHop);
    assert.equal(nested.statusCode, 200, nested.body);
    assert.deepEqual(decodeJwt(nested.json().access_token as string).act, { sub: 'eu-desk-backend', act: { sub: bobThere } });

    // us exchanges both; its tokens, its log and every other table hold nothing of Alice or Bob.
    for (const token of [acted.json().access_token as string, nested.json().access_token as string]) {
      const settled = await exchangeAt(us, 'us-gateway', token, usSettlementApi);
      assert.equal(settled.statusCode, 200, settled.body);
      assert.ok(JSON.stringify(decodeJwt(settled.json().access_token as string).act).includes(bobThere));
    }
    const personal = [person.userId, person.name, person.email, bob.person.userId, bob.person.name, bob.person.email, 'bob@', '"bob"'];
    assert.deepEqual(await us.scan(personal), [], 'us holds nothing of either person');
    assert.ok((await us.scan([bobThere])).some((hit) => hit.startsWith('audit_events:')), "us audits the actor's pseudonym");
  });

  test("no other grant gives a person's token for the other region: the code flow is invalid_target (RFC 8707 §2), the exchange still crosses", async (t) => {
    const { eu, person, orderToken, hopCode } = await twoRegions(t);
    const redeemed = await eu.f.redeem('web-app', hopCode.code, hopCode.verifier);
    assert.equal(redeemed.statusCode, 400, redeemed.body);
    assert.equal(redeemed.json().error, 'invalid_target');
    assert.match(String(redeemed.json().error_description), /region us.*token exchange/);
    assert.equal(redeemed.headers['cache-control'], 'no-store');
    const denied = (await eu.f.auditEvents('policy.denied')).at(-1)!;
    assert.equal(denied.subject, person.userId);
    assert.equal(denied.audience, usHop);
    assert.deepEqual(denied.decision!.reasons, ['region']);

    // The same person's token crosses through token exchange, as her pseudonym.
    const hop = await exchangeAt(eu, 'eu-desk-backend', orderToken, usHop);
    assert.equal(hop.statusCode, 200, hop.body);
    assert.equal(decodeJwt(hop.json().access_token as string).sub, regionSubject(eu.f.ctx, 'us', person.userId));
  });
});
