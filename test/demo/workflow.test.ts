import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demoDocument, lei, loopbackAudiences } from '../../demo/config.ts';
import { runDemo } from '../../demo/workflow.ts';

// `npm run demo` as a test: the institutional workflow against a real Clearance, three real
// resource servers behind clearance/guard, and the audit CLI in child processes.
test('the demo tells the whole story: chain, txn, duplicate refused, revocation fails closed, evidence and the producers’ payloads verified', async () => {
  const lines: string[] = [];
  const outcome = await runDemo((line) => lines.push(line));
  assert.match(outcome.txn, /^[0-9a-f-]{36}$/);
  assert.deepEqual(outcome.settlementChain, ['broker-backend', 'arranger-backend'], 'newest actor first');
  assert.equal(outcome.duplicateStatus, 409, 'a second identical settlement instruction is refused');
  assert.equal(outcome.afterRevocation.exchangeStatus, 403, 'the next hop after revocation fails closed');
  assert.equal(outcome.afterRevocation.newTokenError, 'invalid_grant');
  assert.ok(outcome.bundleVerified, lines.join('\n'));
  // Issue 17's done-when: the trade's bundle holds its first token (the txn started there, with its
  // decision), every hop, and the refusal after the revocation.
  // Issue 24 item 3: and what the broker's OMS and the clearing firm's settlement system appended.
  // The revocation's lapse is filed under the trade once the signal service raises it (10 s after it):
  // under load the export can come later than that.
  const { 'mandate.lapsed_in_flight': lapsed, ...bundleEvents } = outcome.bundleEvents;
  assert.deepEqual(bundleEvents, { 'token.issued': 1, 'token.exchanged': 2, 'exchange.refused': 1, 'evidence.appended': 2 });
  assert.ok(lapsed === undefined || lapsed === 1);
  assert.equal(outcome.rebuiltChain.length, 3, 'two exchanges and the first issuance, from the audit events alone');
  assert.match(outcome.rebuiltChain[0]!, /^broker-backend exchanged/);
  assert.match(outcome.rebuiltChain[1]!, /^arranger-backend exchanged/);
  assert.match(outcome.rebuiltChain[2]!, /^algo-7 held .* the origin of the chain$/);
  assert.ok(lines.some((l) => /agents-trade-only-under-mandate/.test(l)), 'without the mandate, policy refuses the algorithm');
  // Issue 24's done-when: the bundle for the demo's txn contains the OMS's and the settlement
  // system's payload hashes, and verify-bundle checks the payloads they kept.
  assert.deepEqual(
    outcome.appendedEvidence.map((e) => [e.producer, e.type]),
    [
      ['broker-oms', 'order.received'],
      ['clearing-settlement', 'settlement.instructed'],
    ],
  );
  assert.deepEqual(outcome.appendedEvidence.map((e) => e.payload_sha256), outcome.payloadFileHashes, 'the recorded hashes are those of the kept payloads');
  assert.equal(outcome.payloadsVerified.length, 2, lines.join('\n'));
  assert.match(outcome.payloadsVerified[0]!, /is the payload of order\.received OMS-\w+ by broker-oms/);
  assert.match(outcome.payloadsVerified[1]!, /is the payload of settlement\.instructed STL-\w+ by clearing-settlement/);
  assert.ok(lines.some((l) => /appended evidence verified: 2 event\(s\) from external producers \(2 signed by their producer, JWS verified\)/.test(l)), lines.join('\n'));
  // Issue 26's done-when: the clearing firm fetches the evidence of the demo's trade with its own
  // credentials and sees its hops — the broker's exchange to its API, and the chain before it — and
  // nothing else: not the broker's evidence, not the refused hop after the revocation.
  const shared = outcome.counterpartyEvidence;
  assert.equal(shared.status, 200, lines.join('\n'));
  assert.deepEqual(shared.hops, [
    ['chain', undefined],
    ['chain', undefined],
    ['took_part', ['audience']],
  ]);
  // The lapse of the mandate version its chain used is its too, once the signal service has raised it (10 s after the revocation).
  const { 'mandate.lapsed_in_flight': lapse, ...events } = shared.events;
  assert.deepEqual(events, { 'token.issued': 1, 'token.exchanged': 2, 'evidence.appended': 1 });
  assert.ok(lapse === undefined || lapse === 1);
  assert.deepEqual(shared.producers, ['clearing-settlement'], 'its own settlement system’s evidence, not the broker’s OMS’s');
  assert.ok(shared.withheld >= 2, `the broker's evidence and the refused hop are withheld, counted: ${shared.withheld}`);
  assert.ok(shared.verified, lines.join('\n'));
});

test('the clearing firm is a party through the API it runs (owner_lei), and its settlement system holds evidence:append only', () => {
  const audiences = loopbackAudiences({ orders: 1, execution: 2, clearing: 3 });
  const key = { kty: 'EC' };
  const keys = { 'algo-7': key, 'arranger-backend': key, 'broker-backend': key, 'compliance-console': key, 'broker-oms': key, 'clearing-settlement': key, 'clearing-backoffice': key };
  const document = demoDocument(audiences, keys, 'examples/policies', new Date());
  const servers = document.resource_servers as Record<string, unknown>[];
  const clearing = servers.find((r) => r.identifier === audiences.clearing)!;
  assert.equal(clearing.owner_lei, lei.clearing);
  for (const server of servers) {
    for (const member of ['introspection_clients', 'exchange_clients']) {
      assert.ok(!((server[member] as string[] | undefined) ?? []).includes('clearing-settlement'), `clearing-settlement is none of ${String(server.identifier)}'s ${member}`);
    }
  }
  const settlement = (document.clients as Record<string, unknown>[]).find((c) => c.client_id === 'clearing-settlement')!;
  assert.equal(settlement.scope, 'evidence:append');
  // Its back office reads the evidence of the trades its API took: evidence:counterparty only.
  const backoffice = (document.clients as Record<string, unknown>[]).find((c) => c.client_id === 'clearing-backoffice')!;
  assert.deepEqual([backoffice.owner_lei, backoffice.scope], [lei.clearing, 'evidence:counterparty']);
});
