import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { decide } from '../../src/policy/decide.ts';
import { authorizeIssuance } from '../../src/policy/issuance.ts';
import { foldDecisions } from '../../src/policy/issuance-audit.ts';
import { openContext } from '../../src/server.ts';
import { runCli } from '../helpers/cli.ts';
import { exampleEntitiesFile, examplePoliciesDir, ordersApi, peopleAndClients, userId } from '../policy/fixture.ts';

const run = runCli;

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-policy-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('clearance policy test', () => {
  test('passes on the example policies without a database or a configuration', async (t) => {
    const dir = tempDir(t);
    // A data directory that is never created (no database is opened), and a configuration the
    // server would refuse (production without an https issuer or a master key): neither is read.
    const env = { CLEARANCE_DATA_DIR: join(dir, 'never-created'), CLEARANCE_MODE: 'production' };
    const result = await run(['policy', 'test', examplePoliciesDir], env);
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /^\d+ cases: (\d+) passed, 0 failed \(32 policies in 10 files\)$/);
    assert.throws(() => readFileSync(join(dir, 'never-created', 'clearance.db')));
  });

  test('exits 1 listing each mismatch (cases in JSON too)', async (t) => {
    const dir = tempDir(t);
    cpSync(examplePoliciesDir, dir, { recursive: true });
    writeFileSync(
      join(dir, 'tests', 'wrong.json'),
      JSON.stringify({
        // Within trading hours at a desk whose clock is known: the example step-up policies stay out of it.
        context: { local_time: 600, local_weekday: 4 },
        cases: [
          { name: 'expects the wrong decision', principal: 'User::"alice"', action: 'order:create', resource: 'Instrument::"EURUSD"', context: { notional: 100 }, expect: 'deny' },
          { name: 'expects the wrong reason', principal: 'User::"bob"', action: 'rfq:send', resource: 'Instrument::"BTC-USD"', expect: 'deny', reasons: ['some-other-policy'] },
          { name: 'right', principal: 'User::"bob"', action: 'rfq:send', resource: 'Instrument::"BTC-USD"', expect: 'deny' },
        ],
      }),
    );
    const result = await run(['policy', 'test', dir]);
    assert.equal(result.code, 1);
    const lines = result.err.split('\n');
    assert.equal(lines.length, 3, result.err);
    assert.match(lines[0]!, /^FAIL .*wrong\.json cases\[0\] "expects the wrong decision": expected deny, got allow by desk-trades-its-product-classes$/);
    assert.match(lines[1]!, /^FAIL .*wrong\.json cases\[1\] "expects the wrong reason": expected deny by some-other-policy, got deny by kyc-verified-to-trade$/);
    assert.match(lines[2]!, /^\d+ cases: \d+ passed, 2 failed/);
  });

  test('exits 1 with file, line and column for an invalid policy, and with paths for invalid cases', async (t) => {
    const dir = tempDir(t);
    cpSync(examplePoliciesDir, dir, { recursive: true });
    writeFileSync(join(dir, 'broken.cedar'), '// a broken rule\n@id("broken")\nforbid (principal, action, resource)\n  when { context.notional > 1 };\n');
    const invalid = await run(['policy', 'test', dir]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.err, /broken\.cedar:4:10: policy "broken": unable to guarantee safety of access to optional attribute `notional`/);

    rmSync(join(dir, 'broken.cedar'));
    writeFileSync(join(dir, 'tests', 'bad.yaml'), stringify({ cases: [{ name: 'x', principal: 'alice', action: 'order:create', resource: 'Instrument::"EURUSD"', expect: 'maybe' }] }));
    const cases = await run(['policy', 'test', dir]);
    assert.equal(cases.code, 1);
    assert.match(cases.err, /bad\.yaml: cases\[0\]\.principal: must be an entity such as User::"alice"/);
    assert.match(cases.err, /bad\.yaml: cases\[0\]\.expect: must be one of allow, deny/);
  });
});

describe('clearance policy add, activate, list and simulate', () => {
  test('stores a version, activates it with a second person, and shows the decisions a lower limit would flip', async (t) => {
    const dir = tempDir(t);
    const env: NodeJS.ProcessEnv = { CLEARANCE_DATA_DIR: join(dir, 'data'), CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };
    writeFileSync(join(dir, 'people.json'), JSON.stringify(peopleAndClients));
    assert.equal((await run(['apply', '-f', exampleEntitiesFile], env)).code, 0);
    assert.equal((await run(['apply', '-f', join(dir, 'people.json')], env)).code, 0);

    const added = await run(['policy', 'add', examplePoliciesDir, '--version', '2026-01.1', '--change-ref', 'CHG-2026-001', '--author', 'alice'], env);
    assert.equal(added.code, 0, added.err);
    assert.match(added.out, /^created   policy set 2026-01\.1 \(not active/);

    const selfApproved = await run(['policy', 'activate', '2026-01.1', '--approver', 'alice'], env);
    assert.equal(selfApproved.code, 1);
    assert.match(selfApproved.err, /the approver must not be the author/);
    const activated = await run(['policy', 'activate', '2026-01.1', '--approver', 'bob'], env);
    assert.equal(activated.code, 0, activated.err);
    assert.equal(activated.out, 'activated policy set 2026-01.1 (approved by bob)');
    const listed = await run(['policy', 'list'], env);
    assert.match(listed.out, /^\* 2026-01\.1  author alice  approver bob  CHG-2026-001  created /);

    // The server decides some FX orders (recorded in the audit log); alice signed in with a passkey
    // and approved the orders with it, so the example step-up and approval policies (step-up.cedar,
    // approval.cedar) ask nothing more of her.
    const ctx = await openContext(loadConfig(env), { log: createLogger('silent') });
    try {
      const alice = await userId(ctx, 'alice');
      for (const notional of [5_000_000, 20_000_000, 30_000_000, 60_000_000]) {
        await decide(ctx, {
          principal: { type: 'User', id: alice },
          action: 'order:create',
          resource: { type: 'Instrument', id: 'EURUSD', instrument_class: 'fx' },
          context: { notional, acr: 'urn:clearance:acr:phr', approved: true },
        });
      }
      await decide(ctx, { principal: { type: 'Client', id: 'risk-engine' }, action: 'position:view', resource: { type: 'Account', id: 'GB-FX-001' }, context: { region: 'uk' } });
      await decide(ctx, { principal: { type: 'User', id: 'nobody' }, action: 'order:create', resource: { type: 'Instrument', id: 'X', instrument_class: 'fx' } });
      // A token issued to her for a 30m order: its two decisions are folded into token.issued.
      const order = { type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '30000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' };
      const { allows } = await authorizeIssuance(ctx, { subject: { type: 'User', id: alice }, clientId: 'trading-ui', audience: ordersApi, scopes: ['order:create'], authorizationDetails: [order], acr: 'urn:clearance:acr:phr', approved: true, requestId: 'r1', grantType: 'authorization_code' });
      const issued = foldDecisions({ type: 'token.issued', requestId: 'r1', client: 'trading-ui', subject: alice, audience: ordersApi, scopes: ['order:create'], details: { jti: 'j1' } }, allows);
      assert.deepEqual(issued.separate, []);
      await ctx.audit.record(issued.event);
    } finally {
      await (ctx.audit as { close?: () => Promise<void> }).close?.();
      await ctx.storage.close();
    }

    const empty = mkdtempSync(join(tmpdir(), 'clearance-no-policies-'));
    t.after(() => rmSync(empty, { recursive: true, force: true }));
    const nothing = await run(['policy', 'simulate', '--candidate', empty], env);
    assert.equal(nothing.code, 1, 'a folder without policies is no candidate, as at policy add');
    assert.equal(nothing.err, `${empty}: no .cedar policy files`);

    const same = await run(['policy', 'simulate', '--candidate', examplePoliciesDir], env);
    assert.equal(same.code, 0, same.err);
    assert.equal(same.out, `replayed 7 of the last 8 decisions against ${examplePoliciesDir}: 0 would flip (0 allow -> deny, 0 deny -> allow); 1 recorded without their request were not replayed`);

    const lower = join(examplePoliciesDir, 'candidates', 'lower-limit.cedar');
    const simulated = await run(['policy', 'simulate', '--candidate', examplePoliciesDir, '--candidate', lower, '--last', '100'], env);
    assert.equal(simulated.code, 0, simulated.err);
    const lines = simulated.out.split('\n');
    assert.equal(lines.length, 4, simulated.out);
    const flipped = /^allow \(desk-trades-its-product-classes @ 2026-01\.1\) -> deny \(limit-fx-spot-desk-fx\)  \S+  User::"[0-9a-f-]+" order:create Instrument::"EURUSD"  event [0-9a-f-]+/;
    // Newest first: the token's order, named by its token.issued event, then the decide() ones.
    assert.match(lines[0]!, new RegExp(`${flipped.source} \\(token\\.issued\\)$`));
    for (const line of lines.slice(1, 3)) assert.match(line, new RegExp(`${flipped.source}$`));
    assert.match(lines[3]!, /: 3 would flip \(3 allow -> deny, 0 deny -> allow\)/);

    // --last counts the newest decisions only, those of a token event one by one.
    const newest = await run(['policy', 'simulate', '--candidate', examplePoliciesDir, '--candidate', lower, '--last', '3'], env);
    assert.match(newest.out, /^replayed 2 of the last 3 decisions .*: 1 would flip/m);
    const one = await run(['policy', 'simulate', '--candidate', examplePoliciesDir, '--candidate', lower, '--last', '1'], env);
    assert.match(one.out, /^replayed 1 of the last 1 decisions .*: 0 would flip/m);

    const invalid = join(dir, 'invalid.cedar');
    writeFileSync(invalid, 'permit (principal, action, resource);');
    const refused = await run(['policy', 'simulate', '--candidate', invalid], env);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /invalid\.cedar:1:1: has no @id/);
  });
});
