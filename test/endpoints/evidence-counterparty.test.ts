import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { verifyBundle, type EvidenceBundle } from '../../src/audit/bundle.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { personalFields } from '../../src/audit/personal-data.ts';
import { epochSeconds } from '../../src/clock.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { evidenceAudience } from '../../src/resource-servers/builtins.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';
import { runCli } from '../helpers/cli.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { assertErrorShape, assertOAuthError, protocolFixture, type ProtocolFixture } from './fixture.ts';

// GET /evidence/transactions/{txn} over HTTP (docs/evidence.md "Evidence for counterparties"): the
// demo's trade with one more hop each way — algo-7 → arranger → broker → clearing → custodian →
// sub-custodian, and a second branch from the arranger — built with real token requests. Each
// firm fetches with its own client's credentials and gets the hops it took part in and the chain
// before them, verifiable offline, with nothing of the other branch, the later hops, other firms'
// doings or another trade.

const lei = {
  assetManager: '5299000ASSETMGRS0I94',
  arranger: '5299000ARRANGER0DE22',
  broker: '5299000BROKERSXX0G95',
  clearing: '5299000CLEARING00H44',
  custodian: '529900T8BM49AURSDO55',
  bystander: '254900EXAMPLEUS0AA64',
  partnerBank: '5493001KJTIIGC8Y1R12',
};
const api = {
  orders: 'https://orders.arranger.example',
  execution: 'https://execution.broker.example',
  clearing: 'https://clearing.clearing-firm.example',
  custody: 'https://custody.custodian.example',
  subCustody: 'https://sub-custody.example',
  research: 'https://research.example',
};
const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const partnerIssuer = 'https://as.partner-bank.example';

const client = (client_id: string, owner: string | undefined, grant: 'cc' | 'exchange', scope: string) => ({
  client_id,
  kind: client_id === 'algo-7' ? 'agent' : 'service',
  ...(owner ? { owner_lei: owner } : {}),
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [grant === 'cc' ? 'client_credentials' : exchange],
  scope,
});

interface Trade {
  txn: string;
  /** The jti of each hop, by name. */
  hops: Record<'algo' | 'arranger' | 'branch' | 'broker' | 'clearing' | 'custodian', string>;
}

interface Harness extends ProtocolFixture {
  trade: Trade;
  other: Trade;
  /** A client-credentials token for the evidence API. */
  evidenceToken(clientId: string, scope?: string): Promise<string>;
  fetch(txn: string, token?: string): ReturnType<ProtocolFixture['inject']>;
  seal(): Promise<void>;
}

/** The txn of the partner's trade of each harness: one hop, the arranger exchanging the partner bank's token. */
const partnerTxn = new WeakMap<Harness, string>();

async function harness(t: TestContext, dialect?: TestDialect): Promise<Harness> {
  const f = await protocolFixture(t, { risk: 'off', ...(dialect ? { dialect } : {}) });
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [
      { lei: lei.assetManager, name: 'Asset Manager', jurisdiction: 'GB', home_region: 'uk', roles: ['asset_manager'] },
      { lei: lei.arranger, name: 'Arranger', jurisdiction: 'GB', home_region: 'uk', roles: ['arranger'] },
      { lei: lei.broker, name: 'Broker', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
      { lei: lei.clearing, name: 'Clearing', jurisdiction: 'GB', home_region: 'uk', roles: ['clearing'] },
      { lei: lei.custodian, name: 'Custodian', jurisdiction: 'GB', home_region: 'uk', roles: ['custodian'] },
      { lei: lei.bystander, name: 'Bystander', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
      { lei: lei.partnerBank, name: 'Partner Bank', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
    ],
    resource_servers: [
      { identifier: api.orders, owner_lei: lei.arranger, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['arranger-backend'] },
      { identifier: api.execution, owner_lei: lei.broker, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['broker-backend'] },
      { identifier: api.clearing, owner_lei: lei.clearing, scopes: ['settlement:submit'], exchange_clients: ['clearing-backend'] },
      { identifier: api.custody, owner_lei: lei.custodian, scopes: ['settlement:submit'], exchange_clients: ['custodian-backend'] },
      { identifier: api.subCustody, scopes: ['settlement:submit'] },
      // Another branch of the trade: the arranger's research desk, run by no firm of the others.
      { identifier: api.research, scopes: ['order:create'] },
    ],
    clients: [
      client('algo-7', lei.assetManager, 'cc', 'order:create settlement:submit'),
      client('arranger-backend', lei.arranger, 'exchange', 'order:create settlement:submit'),
      client('broker-backend', lei.broker, 'exchange', 'order:create settlement:submit'),
      client('clearing-backend', lei.clearing, 'exchange', 'settlement:submit'),
      client('custodian-backend', lei.custodian, 'exchange', 'settlement:submit'),
      // Each firm's evidence reader: a client of its own, holding evidence:counterparty only.
      client('broker-evidence', lei.broker, 'cc', 'evidence:counterparty'),
      client('clearing-evidence', lei.clearing, 'cc', 'evidence:counterparty'),
      client('am-evidence', lei.assetManager, 'cc', 'evidence:counterparty'),
      client('bystander-evidence', lei.bystander, 'cc', 'evidence:counterparty'),
      client('partner-evidence', lei.partnerBank, 'cc', 'evidence:counterparty'),
      // The broker's OMS appends evidence, and reads none.
      client('broker-oms', lei.broker, 'cc', 'evidence:append'),
    ],
    mandates: [
      {
        id: 'am-algo-7-fx',
        grantor: { lei: lei.assetManager },
        grantee: { client_id: 'algo-7' },
        scopes: ['order:create', 'settlement:submit'],
        legal_basis: { reference: 'Investment management agreement, schedule 3' },
        effective_from: '2020-01-01T00:00:00Z',
        accepted_by: 'head-of-trading',
        accepted_at: '2020-01-01T00:00:00Z',
      },
    ],
    partners: [
      {
        id: 'partner-bank',
        issuer: partnerIssuer,
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'p1', alg: 'ES256', use: 'sig' }] },
        algorithms: ['ES256'],
        allowed_audiences: [api.execution],
        allowed_scopes: ['order:create'],
        clients: ['arranger-backend'],
        legal_entities: [lei.partnerBank],
      },
    ],
  });
  const token = async (clientId: string, form: Record<string, string>) => {
    const response = await f.token({ auth: f.basic(clientId), form });
    assert.equal(response.statusCode, 200, `${clientId}: ${response.body}`);
    return (response.json() as { access_token: string }).access_token;
  };
  const exchanged = (clientId: string, subject: string, target: Record<string, string>) => token(clientId, { grant_type: exchange, subject_token: subject, subject_token_type: accessTokenType, ...target });
  const jti = (jwt: string) => String(decodeJwt(jwt).jti);
  const trade = async (): Promise<Trade> => {
    const algo = await token('algo-7', { grant_type: 'client_credentials', resource: api.orders, mandate: 'am-algo-7-fx', txn: 'new' });
    const arranger = await exchanged('arranger-backend', algo, { resource: api.execution });
    const branch = await exchanged('arranger-backend', algo, { resource: api.research, scope: 'order:create' });
    const broker = await exchanged('broker-backend', arranger, { resource: api.clearing, scope: 'settlement:submit' });
    const clearing = await exchanged('clearing-backend', broker, { resource: api.custody });
    const custodian = await exchanged('custodian-backend', clearing, { resource: api.subCustody });
    return { txn: String(decodeJwt(algo).txn), hops: { algo: jti(algo), arranger: jti(arranger), branch: jti(branch), broker: jti(broker), clearing: jti(clearing), custodian: jti(custodian) } };
  };
  const h = f as Harness;
  h.trade = await trade();
  h.other = await trade();
  // The trade's other events: each firm's own doings under it.
  await f.ctx.audit.record({ type: 'evidence.appended', txn: h.trade.txn, actor: 'broker-oms', client: 'broker-oms', details: { evidence_id: 'e-1', event_id: 'OMS-1', evidence_type: 'order.received', payload_sha256: 'a'.repeat(64), producer_lei: lei.broker, signed: false } });
  await f.ctx.audit.record({ type: 'policy.denied', txn: h.trade.txn, actor: 'custodian-backend', client: 'custodian-backend', decision: { allow: false, reasons: ['custody-limit'] } });
  // An introspection of the broker's hop, with the caller's address (a personal field: sealed when recorded).
  await f.ctx.audit.record({ type: 'token.introspected', txn: h.trade.txn, client: 'broker-backend', details: { jti: h.trade.hops.broker, source_address: '203.0.113.7', user_agent: 'OMS/7.1 (Tara Trader)' } });
  // A person's record under the trade, of no party's: withheld, whatever it holds.
  await f.ctx.audit.record({ type: 'consent.granted', txn: h.trade.txn, actor: 'person-1', subject: 'person-1', client: 'research-app', details: { email: 'tara@asset-manager.example', name: 'Tara Trader' } });
  h.evidenceToken = (clientId, scope = 'evidence:counterparty') => f.accessToken(clientId, { resource: evidenceAudience(f.issuer), scope });
  h.fetch = (txn, bearer) => f.inject({ method: 'GET', url: `/evidence/transactions/${encodeURIComponent(txn)}`, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
  h.seal = () => createSealer(f.ctx, resolveMasterKey(f.ctx.config).key).sealAll().then(() => undefined);
  await h.seal();
  // A partner's token, exchanged by the arranger under a trade of its own (the first hop mints its txn).
  const now = epochSeconds(f.clock);
  const partnerToken = await new SignJWT({ sub: 'pb-trader-9', scope: 'order:create' })
    .setProtectedHeader({ alg: 'ES256', kid: 'p1', typ: 'at+jwt' })
    .setIssuer(partnerIssuer)
    .setAudience(f.issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + 120)
    .setJti(crypto.randomUUID())
    .sign(privateKey);
  partnerTxn.set(h, String(decodeJwt(await exchanged('arranger-backend', partnerToken, { resource: api.execution })).txn));
  await h.seal();
  return h;
}

interface Fetched {
  bundle: EvidenceBundle;
  text: string;
  events: StoredAuditEvent[];
  /** The hops' jtis the bundle holds, and how the statement names them. */
  hops: Map<string, { part: string; as?: string[] }>;
}

async function fetched(h: Harness, clientId: string, txn = h.trade.txn): Promise<Fetched> {
  const response = await h.fetch(txn, await h.evidenceToken(clientId));
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers['cache-control'], 'no-store');
  assert.match(String(response.headers['content-disposition']), new RegExp(`^attachment; filename="evidence-${txn}-${clientId}\\.json"$`));
  const bundle = JSON.parse(response.body) as EvidenceBundle;
  const hops = new Map(bundle.counterparty!.hops.map((hop) => [hop.jti, { part: hop.part, ...(hop.as ? { as: hop.as } : {}) }]));
  return { bundle, text: response.body, events: bundle.events.map((e) => e.event), hops };
}

const tookPart = (f: Fetched) => [...f.hops].filter(([, hop]) => hop.part === 'took_part').map(([jti, hop]) => [jti, hop.as]);
const chainOf = (f: Fetched) => [...f.hops].filter(([, hop]) => hop.part === 'chain').map(([jti]) => jti);

for (const dialect of testDialects()) {
  describe(`GET /evidence/transactions/{txn} on ${dialect.name}`, () => {
    test('the broker gets its hops and the chain before them, not the other branch, the hops after them or another trade; the bundle verifies offline', async (t) => {
      const h = await harness(t, dialect);
      const { hops } = h.trade;
      const broker = await fetched(h, 'broker-evidence');
      const report = verifyBundle(broker.text);
      assert.equal(report.ok, true, report.problems.join('\n'));
      assert.deepEqual(tookPart(broker), [
        [hops.arranger, ['audience']],
        [hops.broker, ['client']],
        [hops.clearing, ['subject_token_client']],
      ]);
      assert.deepEqual(chainOf(broker), [hops.algo], 'the first hop, with its mandate, led to them');
      for (const later of [hops.branch, hops.custodian]) assert.ok(!broker.hops.has(later) && !broker.text.includes(later), 'neither the other branch nor the hop after the clearing firm’s');
      assert.ok(broker.events.every((e) => e.txn === h.trade.txn), 'nothing of another trade');
      for (const jti of Object.values(h.other.hops)) assert.ok(!broker.text.includes(jti));
      // Its own firm's doings under the trade, and nobody else's.
      const types = broker.events.map((e) => `${e.type} ${e.client}`);
      assert.ok(types.includes('evidence.appended broker-oms'), 'its OMS’s evidence');
      assert.ok(types.includes('token.introspected broker-backend'));
      assert.ok(!types.some((t) => t.startsWith('policy.denied') || t.startsWith('consent.granted')), types.join('\n'));
      // The mandate reference of the chain: the first hop's mandate version, verified with it.
      assert.deepEqual(report.counterparty?.mandates, ['am-algo-7-fx v1']);
      assert.equal(report.counterparty?.client, 'broker-evidence');
      assert.equal(report.counterparty?.lei, lei.broker);
      // What it withholds is counted: every sealed event of the trade it does not hold.
      const all = await h.ctx.storage.db.selectFrom('audit_events').select('id').where('txn', '=', h.trade.txn).where('type', '!=', 'evidence.counterparty_exported').execute();
      assert.equal(broker.bundle.counterparty!.withheld, all.length - broker.events.length);
      assert.ok(broker.bundle.counterparty!.withheld >= 4, 'the other branch, the hop after, the custodian’s decision, the person’s record');
      assert.equal(broker.bundle.holds, undefined, 'no legal holds: the operator’s matters');
    });

    test('the clearing firm gets the hops of the API it runs and of its client, and the chain before them; each fetch is on the record', async (t) => {
      const h = await harness(t, dialect);
      const { hops } = h.trade;
      const clearing = await fetched(h, 'clearing-evidence');
      assert.equal(verifyBundle(clearing.text).ok, true);
      assert.deepEqual(tookPart(clearing), [
        [hops.broker, ['audience']],
        [hops.clearing, ['client']],
        [hops.custodian, ['subject_token_client']],
      ]);
      assert.deepEqual(chainOf(clearing), [hops.algo, hops.arranger]);
      assert.ok(!clearing.hops.has(hops.branch));
      assert.ok(!clearing.events.some((e) => e.client === 'broker-oms' || e.client === 'broker-backend' && e.type !== 'token.exchanged'), 'not the broker’s evidence or introspections');
      // The asset manager: its algorithm's hop and the exchange of its token; nothing after.
      const am = await fetched(h, 'am-evidence');
      assert.equal(verifyBundle(am.text).ok, true);
      assert.deepEqual(tookPart(am), [
        [hops.algo, ['client']],
        [hops.arranger, ['subject_token_client']],
        [hops.branch, ['subject_token_client']],
      ]);
      assert.deepEqual(chainOf(am), []);
      const exports = (await h.auditEvents('evidence.counterparty_exported')).map((e) => [e.client, e.txn, e.details?.chain, (e.details?.took_part as { jti: string }[]).length]);
      assert.deepEqual(exports, [
        ['clearing-evidence', h.trade.txn, 2, 3],
        ['am-evidence', h.trade.txn, 0, 3],
      ]);
    });
  });
}

describe('GET /evidence/transactions/{txn} refuses', () => {
  test('a bystander and an unknown txn alike (404, no existence oracle), each refusal on the record', async (t) => {
    const h = await harness(t);
    const bystander = await h.evidenceToken('bystander-evidence');
    const notParty = assertOAuthError(await h.fetch(h.trade.txn, bystander), 404, 'not_found');
    const unknown = assertOAuthError(await h.fetch('no-such-trade', bystander), 404, 'not_found');
    assert.deepEqual(notParty, unknown, 'the same answer');
    // The clearing firm asks for a trade it took no part in (the partner's, to the broker): the same again.
    assertOAuthError(await h.fetch(partnerTxn.get(h)!, await h.evidenceToken('clearing-evidence')), 404, 'not_found');
    const refused = await h.auditEvents('evidence.counterparty_refused');
    assert.deepEqual(
      refused.map((e) => [e.client, e.txn, e.details?.error, e.details?.reason]),
      [
        ['bystander-evidence', h.trade.txn, 'not_found', 'txn_not_party'],
        ['bystander-evidence', 'no-such-trade', 'not_found', 'txn_unknown'],
        ['clearing-evidence', partnerTxn.get(h), 'not_found', 'txn_not_party'],
      ],
    );
    assert.equal((await h.auditEvents('evidence.counterparty_exported')).length, 0);
  });

  test('a token without evidence:counterparty (403 insufficient_scope, on the record), none (401), a malformed txn (400)', async (t) => {
    const h = await harness(t);
    const oms = await h.evidenceToken('broker-oms', 'evidence:append');
    const response = await h.fetch(h.trade.txn, oms);
    assertOAuthError(response, 403, 'insufficient_scope');
    assert.match(String(response.headers['www-authenticate']), /scope="evidence:counterparty"/);
    assertOAuthError(await h.fetch(h.trade.txn), 401, 'invalid_token');
    // A token for another audience: the broker's own API's.
    const orders = await h.accessToken('broker-1', { resource: 'https://orders.example.com/api' });
    assertOAuthError(await h.fetch(h.trade.txn, orders), 401, 'invalid_token');
    assertOAuthError(await h.fetch('a b', await h.evidenceToken('broker-evidence')), 400, 'invalid_request');
    const refused = await h.auditEvents('evidence.counterparty_refused');
    assert.deepEqual(
      refused.map((e) => [e.client, e.txn, e.details?.reason]),
      [
        ['broker-oms', h.trade.txn, 'insufficient_scope'],
        ['broker-1', h.trade.txn, 'invalid_token'],
        ['broker-evidence', undefined, 'malformed'],
      ],
      'every fetch by an identified client is one event; a request with no token identifies nobody',
    );
  });
});

describe('a counterparty’s bundle', () => {
  test('holds no personal field in the clear, reveals none, and names people by their ids only', async (t) => {
    const h = await harness(t);
    const broker = await fetched(h, 'broker-evidence');
    for (const value of ['203.0.113.7', 'Tara Trader', 'tara@asset-manager.example']) assert.ok(!broker.text.includes(value), value);
    assert.equal(broker.bundle.personal, undefined, 'nothing revealed beside the events');
    for (const event of broker.events) {
      for (const field of Object.keys(personalFields)) assert.equal(event.details?.[field], undefined, `${event.type}: ${field} in the clear`);
    }
    const introspected = broker.events.find((e) => e.type === 'token.introspected')!;
    assert.deepEqual((introspected.details?.personal as { fields: string[] }).fields, ['source_address', 'user_agent'], 'the ciphertext the leaf covers, its names only');
  });

  test('of a partner: the firm the partner speaks for gets the hop that exchanged the partner’s token', async (t) => {
    const h = await harness(t);
    const txn = partnerTxn.get(h)!;
    const partner = await fetched(h, 'partner-evidence', txn);
    assert.equal(verifyBundle(partner.text).ok, true);
    assert.deepEqual(tookPart(partner).map(([, as]) => as), [['partner']]);
    assert.equal(partner.events[0]!.details?.parent_issuer, partnerIssuer);
  });

  test('verifies with `clearance audit verify-bundle`, which says for whom it was cut and how much it withholds', async (t) => {
    const h = await harness(t);
    const clearing = await fetched(h, 'clearing-evidence');
    const dir = mkdtempSync(join(tmpdir(), 'clearance-counterparty-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'bundle.json');
    writeFileSync(file, clearing.text);
    const run = await runCli(['audit', 'verify-bundle', file], { CLEARANCE_DATA_DIR: join(dir, 'data') });
    assert.equal(run.code, 0, `${run.out}\n${run.err}`);
    assert.match(run.out, /^bundle verified: \d+ event\(s\)/);
    assert.match(run.out, new RegExp(`counterparty bundle verified: cut for clearing-evidence \\(${lei.clearing}\\): 3 hop\\(s\\) it took part in, 2 earlier hop\\(s\\) of the chain before them; ${clearing.bundle.counterparty!.withheld} event\\(s\\) of the txn withheld`));
    assert.match(run.out, /the chain's references: mandate am-algo-7-fx v1/);
    // A changed statement is caught: the signature covers it.
    const tampered = clearing.text.replace(`"withheld":${clearing.bundle.counterparty!.withheld}`, '"withheld":0');
    writeFileSync(file, tampered);
    assert.equal((await runCli(['audit', 'verify-bundle', file], { CLEARANCE_DATA_DIR: join(dir, 'data') })).code, 1);
  });

  test('waits for its hops to be sealed: 503 with Retry-After to a party, the same 404 to a bystander', async (t) => {
    const h = await harness(t);
    const late = await h.token({ auth: h.basic('algo-7'), form: { grant_type: 'client_credentials', resource: api.orders, mandate: 'am-algo-7-fx', txn: 'late-trade' } });
    assert.equal(late.statusCode, 200, late.body);
    const response = await h.fetch('late-trade', await h.evidenceToken('am-evidence'));
    // Not an error of the request: the log has not proven its part yet (the sealer runs every 100 ms on SQLite, 500 ms on PostgreSQL).
    assert.equal(response.statusCode, 503, response.body);
    assertErrorShape(response);
    assert.equal(response.headers['retry-after'], '1');
    assert.deepEqual(response.json(), { error: 'temporarily_unavailable', error_description: 'the evidence of your part in this txn is not sealed yet; retry in a second' });
    assertOAuthError(await h.fetch('late-trade', await h.evidenceToken('bystander-evidence')), 404, 'not_found');
    await h.seal();
    const am = await fetched(h, 'am-evidence', 'late-trade');
    assert.equal(verifyBundle(am.text).ok, true);
  });
});

describe('a counterparty with a pairwise client (OIDC Core §8.1)', () => {
  test('is given no event naming a person, whose local id its firm’s pairwise client is never told; it counts them, and the bundle verifies', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    const desk = 'https://desk.arranger.example';
    await f.apply({
      regions: [{ id: 'uk' }],
      legal_entities: [
        { lei: lei.arranger, name: 'Arranger', jurisdiction: 'GB', home_region: 'uk', roles: ['arranger'] },
        { lei: lei.clearing, name: 'Clearing', jurisdiction: 'GB', home_region: 'uk', roles: ['clearing'] },
      ],
      resource_servers: [
        { identifier: desk, owner_lei: lei.arranger, scopes: ['order:create'], exchange_clients: ['arranger-backend'] },
        { identifier: api.clearing, owner_lei: lei.clearing, scopes: ['order:create'] },
      ],
      clients: [client('arranger-backend', lei.arranger, 'exchange', 'order:create'), client('clearing-evidence', lei.clearing, 'cc', 'evidence:counterparty')],
    });
    // A person signs in at the trading desk, consenting to both APIs; the arranger exchanges their
    // token for the clearing firm's (the first hop of a txn).
    const person = await f.signIn('tara');
    await f.authorizeAndApprove({ person, query: { resource: api.clearing } });
    const { code, pkce } = await f.authorizeAndApprove({ person, query: { resource: desk } });
    const redeemed = await f.redeem('web-app', code, pkce.verifier, { resource: desk });
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    const exchanged = await f.token({
      auth: f.basic('arranger-backend'),
      form: { grant_type: exchange, subject_token: (redeemed.json() as { access_token: string }).access_token, subject_token_type: accessTokenType, resource: api.clearing },
    });
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const hop = decodeJwt((exchanged.json() as { access_token: string }).access_token);
    assert.equal(hop.sub, person.userId, 'the hop is about the person, by their local id');
    await createSealer(f.ctx, resolveMasterKey(f.ctx.config).key).sealAll();
    const fetch = async () => {
      const response = await f.inject({ method: 'GET', url: `/evidence/transactions/${String(hop.txn)}`, headers: { authorization: `Bearer ${await f.accessToken('clearing-evidence', { resource: evidenceAudience(f.issuer), scope: 'evidence:counterparty' })}` } });
      assert.equal(response.statusCode, 200, response.body);
      return { text: response.body, bundle: JSON.parse(response.body) as EvidenceBundle };
    };
    // A firm of public clients only is told the local id, as its clients are.
    const open = await fetch();
    assert.ok(open.text.includes(person.userId));
    assert.deepEqual(open.bundle.counterparty!.hops.map((h) => h.part), ['took_part']);
    assert.equal(open.bundle.counterparty!.persons_withheld, undefined);
    // The firm registers a pairwise client: its evidence no longer names the person.
    await f.apply({
      clients: [{ client_id: 'clearing-portal', kind: 'app', owner_lei: lei.clearing, subject_type: 'pairwise', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: ['https://portal.clearing-firm.example/cb'], scope: 'openid' }],
    });
    const pairwise = await fetch();
    assert.ok(!pairwise.text.includes(person.userId), 'the local id appears nowhere in the bundle');
    assert.deepEqual(pairwise.bundle.counterparty!.hops, []);
    assert.ok(pairwise.bundle.events.every(({ event }) => event.subject === undefined || event.subject === event.client));
    const withheld = open.bundle.events.length - pairwise.bundle.events.length;
    assert.ok(withheld >= 1);
    assert.equal(pairwise.bundle.counterparty!.persons_withheld, open.bundle.events.filter(({ event }) => event.subject === person.userId).length);
    const report = verifyBundle(pairwise.text);
    assert.equal(report.ok, true, report.problems.join('\n'));
    assert.equal(report.counterparty?.personsWithheld, pairwise.bundle.counterparty!.persons_withheld);
    const exported = await f.auditEvents('evidence.counterparty_exported');
    assert.deepEqual(exported.map((e) => e.details?.persons_withheld), [undefined, pairwise.bundle.counterparty!.persons_withheld]);
  });
});
