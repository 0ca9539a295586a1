import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { namesPerson, selectForCounterparty, type CounterpartyParty } from '../../src/evidence/counterparty.ts';

// Which of a txn's events a counterparty receives (src/evidence/counterparty.ts), on events as the
// token grants write them: hops by jti and parent_jti, act_chain newest first.

let seq = 0;
function event(type: StoredAuditEvent['type'], fields: Partial<StoredAuditEvent> = {}): StoredAuditEvent {
  seq++;
  return { v: 1, id: `e-${seq}`, time: 1_700_000_000_000 + seq, node: 'n', txn: 'trade-1', type, ...fields };
}
const issued = (jti: string, client: string, audience: string, extra: Partial<StoredAuditEvent> = {}) =>
  event('token.issued', { client, actor: client, subject: client, audience, ...extra, details: { jti, ...extra.details } });
const exchanged = (jti: string, parent: string, client: string, audience: string, actChain: string[], extra: Record<string, unknown> = {}) =>
  event('token.exchanged', { client, actor: client, subject: 'algo-7', audience, details: { jti, parent_jti: parent, parent_issuer: 'https://clearance.example', act_chain: actChain, ...extra } });

const party = (clients: string[], more: Partial<CounterpartyParty> = {}): CounterpartyParty => ({ client: clients[0]!, clients: new Set(clients), audiences: new Set(), partnerIssuers: new Set(), ...more });

// algo-7 → orders (h1); arranger → execution (h2); broker → clearing (h3); arranger → research (h2b).
const h1 = issued('h1', 'algo-7', 'https://orders', { mandate: { id: 'm-1', v: 3 } });
const h2 = exchanged('h2', 'h1', 'arranger-backend', 'https://execution', ['arranger-backend']);
const h2b = exchanged('h2b', 'h1', 'arranger-backend', 'https://research', ['arranger-backend']);
const h3 = exchanged('h3', 'h2', 'broker-backend', 'https://clearing', ['broker-backend', 'arranger-backend']);
const trade = [h1, h2, h2b, h3];

const ids = (events: readonly StoredAuditEvent[]) => new Set(events.map((e) => e.id));

describe('a counterparty’s selection', () => {
  test('gives the resource server’s firm the hop of its API and the chain before it, and nothing after or beside it', () => {
    const clearing = selectForCounterparty(trade, party(['clearing-reader'], { audiences: new Set(['https://clearing']) }));
    assert.deepEqual(clearing.hops, [
      { jti: 'h1', part: 'chain' },
      { jti: 'h2', part: 'chain' },
      { jti: 'h3', part: 'took_part', as: ['audience'] },
    ]);
    assert.deepEqual(clearing.include, ids([h1, h2, h3]));
  });

  test('counts only the current actor of a hop (RFC 8693 §4.1), not the prior actors nested in its act', () => {
    // The arranger is a prior actor of h3: it does not take part in it as one.
    const arranger = selectForCounterparty([h1, h2, h3], party(['arranger-backend']));
    assert.deepEqual(arranger.hops.map((h) => [h.jti, h.as]), [
      ['h1', undefined],
      ['h2', ['client']],
      ['h3', ['subject_token_client']],
    ]);
    // An actor token's subject acting in a hop its client requested: the actor's party takes part.
    const acted = exchanged('h4', 'h3', 'clearing-backend', 'https://custody', ['ops-bot', 'broker-backend']);
    const bot = selectForCounterparty([...trade, acted], party(['ops-bot']));
    assert.deepEqual(bot.hops.filter((h) => h.part === 'took_part'), [{ jti: 'h4', part: 'took_part', as: ['actor'] }]);
  });

  test('makes a party of the partner that speaks for the firm when its token was exchanged, or its subject acted', () => {
    const partnerIssuer = 'https://as.partner.example';
    const fromPartner = exchanged('p1', 'partner-jti', 'arranger-backend', 'https://execution', ['arranger-backend'], { parent_issuer: partnerIssuer });
    const partnerActs = exchanged('p2', 'p1', 'broker-backend', 'https://clearing', [`pb-trader (${partnerIssuer})`, 'arranger-backend'], { actor_issuer: partnerIssuer });
    const partner = selectForCounterparty([fromPartner, partnerActs], party(['partner-reader'], { partnerIssuers: new Set([partnerIssuer]) }));
    assert.deepEqual(partner.hops.map((h) => [h.jti, h.as]), [
      ['p1', ['partner']],
      ['p2', ['actor', 'partner']],
    ]);
    assert.equal(selectForCounterparty([fromPartner], party(['partner-reader'])).tookPart, false, 'a partner that does not speak for the firm makes it no party');
  });

  test('takes a party’s own doings, the revocations of the bundle’s tokens, the approvals and mandate lapses of its chain, and no one else’s', () => {
    const own = event('evidence.appended', { client: 'broker-oms', actor: 'broker-oms' });
    const revoked = event('token.revoked', { details: { jti: 'h1' } });
    const revokedElsewhere = event('token.revoked', { details: { jti: 'h2b' } });
    const lapsed = event('mandate.lapsed_in_flight', { mandate: { id: 'm-1', v: 3 } });
    const otherLapse = event('mandate.lapsed_in_flight', { mandate: { id: 'm-1', v: 2 } });
    const othersDecision = event('policy.denied', { client: 'research-pep', decision: { allow: false, reasons: ['x'] } });
    // The refusal of a bystander naming the txn makes it no party, and is not the broker's.
    const bystander = event('evidence.counterparty_refused', { client: 'bystander', actor: 'bystander', details: { error: 'not_found', reason: 'txn_not_party' } });
    const broker = selectForCounterparty([...trade, own, revoked, revokedElsewhere, lapsed, otherLapse, othersDecision, bystander], party(['broker-backend', 'broker-oms']));
    assert.deepEqual(broker.include, ids([h1, h2, h3, own, revoked, lapsed]));
    assert.equal(selectForCounterparty([...trade, bystander], party(['bystander'])).tookPart, false);
  });

  test('carries the approvals a CIBA token of the chain was issued on, which verify-bundle requires', () => {
    const digests = [{ sub: 'person-1', role: 'subject', evidence_digest: 'd-1' }];
    const ciba = issued('c1', 'desk-app', 'https://orders', { details: { jti: 'c1', evidence_digests: digests } });
    const approval = event('approval.given', { actor: 'person-1', details: { request_id: 'trade-1', role: 'subject', evidence_digest: 'd-1' } });
    const anotherApproval = event('approval.given', { actor: 'person-2', details: { request_id: 'trade-1', role: 'approver', evidence_digest: 'd-2' } });
    const hop = exchanged('c2', 'c1', 'broker-backend', 'https://clearing', ['broker-backend']);
    const broker = selectForCounterparty([ciba, approval, anotherApproval, hop], party(['broker-backend']));
    assert.deepEqual(broker.include, ids([ciba, approval, hop]));
  });

  test('withholds from a party with a pairwise client every event naming a person, and the chain above such a hop (OIDC Core §8.1)', () => {
    // A person's token (their local id as subject) for the orders API, exchanged by the arranger and
    // then the broker for the clearing API; the person's approval is filed under the trade too.
    const person = 'b2d6c1f0-7a43-4c57-9f0e-3f1d2a9c8e11';
    const registered = new Set(['desk-app', 'arranger-backend', 'broker-backend', 'clearing-reader', 'clearing-portal']);
    const personal = issued('q1', 'desk-app', 'https://orders', { subject: person });
    const q2 = exchanged('q2', 'q1', 'arranger-backend', 'https://execution', ['arranger-backend']);
    const q3 = exchanged('q3', 'q2', 'broker-backend', 'https://clearing', ['broker-backend', 'arranger-backend']);
    const personHops = [personal, { ...q2, subject: person }, { ...q3, subject: person }];
    const approval = event('approval.given', { actor: person, subject: person, client: 'clearing-reader', details: { role: 'subject' } });
    const appended = event('evidence.appended', { client: 'clearing-reader', actor: 'clearing-reader' });
    const clearing = { audiences: new Set(['https://clearing']) };
    // The same party without a pairwise client: the hop, its chain, its own doings.
    const open = selectForCounterparty([...personHops, approval, appended], party(['clearing-reader', 'clearing-portal'], clearing));
    assert.deepEqual(open.include, ids([...personHops, approval, appended]));
    assert.equal(open.personsWithheld, undefined);
    // With one: nothing that names the person; it still took part, and is told how much was withheld.
    const pairwise = selectForCounterparty([...personHops, approval, appended], party(['clearing-reader', 'clearing-portal'], { ...clearing, pairwise: { clients: registered } }));
    assert.deepEqual(pairwise.include, ids([appended]));
    assert.deepEqual(pairwise.hops, []);
    assert.equal(pairwise.tookPart, true, 'a party, answered as one');
    assert.equal(pairwise.personsWithheld, 4);
    // A client's own hop below a person's: shown, and its chain ends at the person's hop.
    const machine = exchanged('q3', 'q2', 'broker-backend', 'https://clearing', ['broker-backend']);
    const machineChain = [issued('m1', 'algo-7', 'https://orders'), { ...q2, details: { ...q2.details, parent_jti: 'm1' }, subject: person }, { ...machine, subject: 'broker-backend' }];
    const cut = selectForCounterparty(machineChain, party(['clearing-reader'], { ...clearing, pairwise: { clients: new Set([...registered, 'algo-7']) } }));
    assert.deepEqual(cut.hops, [{ jti: 'q3', part: 'took_part', as: ['audience'] }], 'neither the person’s hop nor the client’s hop above it');
    assert.equal(cut.personsWithheld, 2);
  });

  test('counts as a person any name that is not a registered client: a local id, a partner’s subject, an approver, a removed client', () => {
    const clients = new Set(['broker-backend', 'arranger-backend']);
    const hop = (fields: Partial<StoredAuditEvent>, details: Record<string, unknown> = {}) =>
      event('token.exchanged', { client: 'broker-backend', actor: 'broker-backend', subject: 'broker-backend', ...fields, details: { jti: 'n', act_chain: ['broker-backend'], ...details } });
    assert.equal(namesPerson(hop({}), clients), false, 'a client’s own token');
    assert.equal(namesPerson(hop({ subject: 'a-local-id' }), clients), true);
    assert.equal(namesPerson(hop({ subject: 'gone-client' }), clients), true, 'not registered: fail closed');
    assert.equal(namesPerson(hop({}, { act_chain: ['pb-trader-9 (https://as.partner.example)', 'broker-backend'] }), clients), true, 'a partner’s subject acting');
    assert.equal(namesPerson(hop({}, { evidence_digests: [{ sub: 'a-local-id', role: 'subject' }] }), clients), true);
    assert.equal(namesPerson(hop({}, { region_crossing: { from: 'uk', to: 'us', local_subject: 'a-local-id' } }), clients), true);
    assert.equal(namesPerson(event('approval.given', { actor: 'a-local-id' }), clients), true);
    assert.equal(namesPerson(event('token.introspected', { client: 'broker-backend' }), clients), false, 'names nobody');
  });

  test('withholds an event holding a personal field in the clear: fail closed', () => {
    const clear = exchanged('x1', 'h1', 'broker-backend', 'https://clearing', ['broker-backend'], { email: 'someone@example.com' });
    const selection = selectForCounterparty([h1, clear], party(['broker-backend']));
    assert.equal(selection.include.has(clear.id), false);
    assert.deepEqual(selection.hops, [], 'its chain is not given for it either');
  });
});
