import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { loadConfig } from '../../src/config.ts';
import { appendExternalEvidence } from '../../src/evidence/external.ts';
import { payloadSha256, signEvidenceStatement } from '../../src/guard/evidence.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { formatProblem } from '../../src/validation.ts';
import { cliWorkspace } from '../helpers/cli.ts';

// `clearance audit verify-bundle BUNDLE --payload FILE…` (docs/evidence.md): the payloads an
// auditor holds are matched to the trade's appended events by SHA-256, offline.

const lei = '5493001KJTIIGC8Y1R12';
const order = '{"order_id":"ORD-7","side":"buy","notional":"2000000","currency":"EUR"}\n';
const settlement = '{"settlement_id":"STL-7","amount":"2000000","currency":"EUR"}\n';

/** What the clearing firm's system recorded under its own event id ORD-7 (another producer's). */
const clearingOrder = '{"clearing_ref":"ORD-7","status":"novated"}\n';

/** A trade bundle; with `clash`, a second producer (`settle`) used the event id ORD-7 too. */
async function tradeBundle(t: TestContext, options: { clash?: boolean } = {}) {
  const w = cliWorkspace(t, 'clearance-cli-payload-');
  const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
  try {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const { plan, problems } = await planApply(ctx, {
      regions: [{ id: 'uk' }],
      legal_entities: [{ lei, name: 'Broker', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] }],
      resource_servers: [{ identifier: 'https://orders.example.com', scopes: ['order:create'] }],
      clients: [
        { client_id: 'oms', kind: 'service', owner_lei: lei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:append', jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'oms-1', alg: 'ES256' }] } },
        { client_id: 'backend', kind: 'service', owner_lei: lei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' },
        { client_id: 'settle', kind: 'service', owner_lei: lei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:append' },
      ],
    });
    if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
    await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
    await ctx.audit.record({ type: 'token.issued', client: 'backend', txn: 'trade-7', details: {} });
    const signedFields = { producer: 'oms', txn: 'trade-7', event_id: 'ORD-7', type: 'order.received', payload_sha256: payloadSha256(order) };
    const { producer: _p, ...sent } = signedFields;
    await appendExternalEvidence(ctx, 'oms', { ...sent, jws: await signEvidenceStatement(signedFields, { privateKey, kid: 'oms-1' }) }, 'r1');
    await appendExternalEvidence(ctx, 'oms', { txn: 'trade-7', event_id: 'STL-7', type: 'settlement.instructed', payload_sha256: payloadSha256(settlement) }, 'r2');
    if (options.clash) await appendExternalEvidence(ctx, 'settle', { txn: 'trade-7', event_id: 'ORD-7', type: 'settlement.matched', payload_sha256: payloadSha256(clearingOrder) }, 'r3');
  } finally {
    await ctx.storage.close();
  }
  const bundle = join(w.dir, 'bundle.json');
  const exported = await w.run('audit', 'export', '--txn', 'trade-7', '-o', bundle);
  assert.equal(exported.code, 0, exported.err);
  const file = (name: string, text: string) => {
    const path = join(w.dir, name);
    writeFileSync(path, text);
    return path;
  };
  return { ...w, bundle, orderFile: file('order.json', order), settlementFile: file('settlement.json', settlement), clearingFile: file('clearing.json', clearingOrder), file };
}

test('verify-bundle --payload verifies the supplied payloads against their recorded hashes and names their events', async (t) => {
  const w = await tradeBundle(t);
  const plain = await w.run('audit', 'verify-bundle', w.bundle);
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /appended evidence verified: 2 event\(s\) from external producers \(1 signed by their producer, JWS verified\)/);
  assert.match(plain.out, /order\.received ORD-7 by oms \(5493001KJTIIGC8Y1R12\) under txn trade-7.*signed \(key /);
  assert.doesNotMatch(plain.out, /payload (verified|not supplied)/, 'no payload lines without --payload');

  // Both payloads: one repeated --payload, the other listed after it.
  const both = await w.run('audit', 'verify-bundle', w.bundle, '--payload', w.orderFile, w.settlementFile);
  assert.equal(both.code, 0, both.err);
  assert.match(both.out, new RegExp(`payload verified: ${w.orderFile} is the payload of order\\.received ORD-7 by oms`));
  assert.match(both.out, new RegExp(`payload verified: ${w.settlementFile} is the payload of settlement\\.instructed STL-7 by oms`));
  assert.doesNotMatch(both.out, /payload not supplied/);

  // One payload, named by its event: the other is reported as not supplied (not a failure).
  const one = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `ORD-7=${w.orderFile}`);
  assert.equal(one.code, 0, one.err);
  assert.match(one.out, /payload not supplied: settlement\.instructed STL-7 by oms/);

  const json = JSON.parse((await w.run('audit', 'verify-bundle', w.bundle, '--json', '--payload', w.orderFile)).out);
  assert.equal(json.ok, true);
  assert.deepEqual(json.payloads.matched.map((m: { evidence: { eventId: string } }) => m.evidence.eventId), ['ORD-7']);
});

test('verify-bundle --payload fails on an altered payload, a payload of another event, an unmatched or unreadable file', async (t) => {
  const w = await tradeBundle(t);
  const altered = w.file('order-altered.json', order.replace('2000000', '2000001'));
  const mismatch = await w.run('audit', 'verify-bundle', w.bundle, '--payload', altered);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.err, /payload verification FAILED/);
  assert.match(mismatch.err, /order-altered\.json: matches no appended event's recorded hash/);
  assert.match(mismatch.out, /^bundle verified/, 'the bundle itself still verifies');

  const crossed = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `STL-7=${w.orderFile}`);
  assert.equal(crossed.code, 1);
  assert.match(crossed.err, /does not match event oms:STL-7/);

  const stranger = await w.run('audit', 'verify-bundle', w.bundle, '--payload', w.orderFile, w.file('unrelated.txt', 'hello\n'));
  assert.equal(stranger.code, 1, 'one good file does not excuse an unmatched one');
  assert.match(stranger.err, /unrelated\.txt: matches no appended event/);

  const missing = await w.run('audit', 'verify-bundle', w.bundle, '--payload', join(w.dir, 'nope.json'));
  assert.equal(missing.code, 1);
  assert.match(missing.err, /nope\.json: cannot be read \(ENOENT\)/);
});

test('verify-bundle refuses a bare EVENT_ID two producers used as ambiguous, naming them; PRODUCER:EVENT_ID or the evidence id picks one', async (t) => {
  const w = await tradeBundle(t, { clash: true });
  // The clearing file's hash is settle's ORD-7, not oms's: named bare, it must not pass as "the" ORD-7.
  const bare = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `ORD-7=${w.clearingFile}`);
  assert.equal(bare.code, 1);
  assert.match(bare.err, /payload verification FAILED/);
  assert.match(bare.err, /ORD-7 is ambiguous: it names 2 appended events .*of producer\(s\) oms, settle; name one as PRODUCER:EVENT_ID=FILE or EVIDENCE_ID=FILE/);
  assert.doesNotMatch(bare.out, /payload verified/);

  const wrongProducer = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `oms:ORD-7=${w.clearingFile}`);
  assert.equal(wrongProducer.code, 1);
  assert.match(wrongProducer.err, /does not match event oms:ORD-7/);

  const named = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `oms:ORD-7=${w.orderFile}`, `settle:ORD-7=${w.clearingFile}`, `STL-7=${w.settlementFile}`);
  assert.equal(named.code, 0, named.err);
  assert.match(named.out, /clearing\.json is the payload of settlement\.matched ORD-7 by settle/);
  assert.match(named.out, /order\.json is the payload of order\.received ORD-7 by oms/);

  const json = JSON.parse((await w.run('audit', 'verify-bundle', w.bundle, '--json')).out);
  const settled = json.appended.find((a: { producer: string }) => a.producer === 'settle');
  const byId = await w.run('audit', 'verify-bundle', w.bundle, '--payload', `${settled.evidenceId}=${w.clearingFile}`);
  assert.equal(byId.code, 0, byId.err);
});

test('verify-bundle reads the bundle first and every argument after --payload, up to the next option, as a payload', async (t) => {
  const w = await tradeBundle(t);
  // The order the reviewer found read `settlement.json` as the bundle: now no bundle is named, and it says so.
  const misordered = await w.run('audit', 'verify-bundle', '--payload', w.orderFile, w.settlementFile, w.bundle);
  assert.equal(misordered.code, 2);
  assert.match(misordered.err, /verify-bundle: no bundle: every argument after --payload up to the next option is a payload file .*name the bundle first/);
  assert.match(misordered.err, /usage: clearance audit verify-bundle BUNDLE/);

  const two = await w.run('audit', 'verify-bundle', w.bundle, '--payload', w.orderFile, '--json', w.settlementFile);
  assert.equal(two.code, 2);
  assert.match(two.err, /verify-bundle: one bundle, not 2 .*payload files go after --payload, before any other option/);
  assert.equal((await w.run('audit', 'verify-bundle', w.bundle, w.orderFile)).code, 2, 'a second positional without --payload is no silent extra');

  // Options may come first or in between; the files run from --payload to the next option.
  const ordered = await w.run('audit', 'verify-bundle', '--json', w.bundle, '--payload', w.orderFile, w.settlementFile);
  assert.equal(ordered.code, 0, ordered.err);
  assert.deepEqual(JSON.parse(ordered.out).payloads.matched.map((m: { evidence: { eventId: string } }) => m.evidence.eventId), ['ORD-7', 'STL-7']);
  const repeated = await w.run('audit', 'verify-bundle', '--payload', w.orderFile, '--json', w.bundle, '--payload', w.settlementFile);
  assert.equal(repeated.code, 0, repeated.err);
  assert.equal(JSON.parse(repeated.out).payloads.matched.length, 2);
});

test('the help documents --payload, its names and the order of the arguments', async (t) => {
  const w = cliWorkspace(t);
  const help = await w.run('audit', '--help');
  assert.match(help.out, /verify-bundle BUNDLE \[--key FILE\] \[--payload \[NAME=\]FILE \.\.\.\]/);
  assert.match(help.out, /--payload FILE +a payload an external producer recorded/);
  assert.match(help.out, /every argument after --payload up to\s+the next option is a payload file/);
  assert.match(help.out, /PRODUCER:EVENT_ID \(its producer's client_id and event_id\)/);
  assert.match(help.out, /BUNDLE is the one\s+argument not after --payload/);
});
