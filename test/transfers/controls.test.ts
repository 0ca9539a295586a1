import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { controlsFor, readTransferControlsSection, transferControls } from '../../src/transfers/controls.ts';
import { formatProblem, Validator } from '../../src/validation.ts';
import { testContext } from '../helpers/storage.ts';

const lei = '5493001KJTIIGC8Y1R12';
const u = (n: string) => parseAmount(n, 'exact')!;

const section = {
  defaults: { first_use_hold: 300, assets: { USD: { approval_threshold: '1000000', daily_limit: '5000000' }, EUR: { daily_limit: 100 } } },
  entities: {
    [lei]: {
      first_use_hold: 0,
      assets: { USD: { approval_threshold: '250000' }, 'eip155:1/slip44:60': { approval_threshold: '10', daily_limit: '100.5' } },
      accounts: { 'TRE-002': { USD: { daily_limit: 'off' } } },
    },
  },
};

describe("apply's transfer_controls section", () => {
  test('resolves the most specific level value by value: account, legal entity, defaults', () => {
    const v = new Validator();
    const controls = readTransferControlsSection(v, 'transfer_controls', section);
    assert.deepEqual(v.problems, []);
    assert.deepEqual(controlsFor(controls!, lei, 'TRE-001', 'USD'), { approvalThreshold: u('250000'), dailyLimit: u('5000000'), firstUseHoldSeconds: 0 });
    assert.deepEqual(controlsFor(controls!, lei, 'TRE-002', 'USD'), { approvalThreshold: u('250000'), firstUseHoldSeconds: 0 }, 'off at the account');
    assert.deepEqual(controlsFor(controls!, lei, 'TRE-001', 'eip155:1/slip44:60'), { approvalThreshold: u('10'), dailyLimit: u('100.5'), firstUseHoldSeconds: 0 });
    assert.deepEqual(controlsFor(controls!, '969500CUBANEXAMPLE21', 'CU-1', 'EUR'), { dailyLimit: u('100'), firstUseHoldSeconds: 300 });
    assert.deepEqual(controlsFor(controls!, lei, 'TRE-001', 'GBP'), { firstUseHoldSeconds: 0 }, 'an asset nobody names has no threshold and no limit');
  });

  test('names every problem by its path', () => {
    const v = new Validator();
    readTransferControlsSection(v, 'transfer_controls', {
      defaults: { first_use_hold: -1, assets: { usd: {}, EUR: { daily_limit: '-5' }, GBP: { approval_threshold: '1.0000001', cap: 1 } } },
      entities: { NOTALEI: {}, [lei]: { accounts: { 'TRE 1': {} }, cool_down: 5 } },
      other: true,
    });
    assert.deepEqual(v.problems.map(formatProblem).sort(), [
      'transfer_controls.defaults.assets.EUR.daily_limit: must be a positive decimal amount (at most 6 decimals, below 9,000,000,000) or off',
      'transfer_controls.defaults.assets.GBP.approval_threshold: must be a positive decimal amount (at most 6 decimals, below 9,000,000,000) or off',
      'transfer_controls.defaults.assets.GBP.cap: is not a recognised field',
      'transfer_controls.defaults.assets.usd: is not an ISO 4217 currency code or a CAIP-19 asset id',
      'transfer_controls.defaults.first_use_hold: must be from 0 to 86400',
      `transfer_controls.entities.${lei}.accounts.TRE 1: is not an account id`,
      `transfer_controls.entities.${lei}.cool_down: is not a recognised field`,
      'transfer_controls.entities.NOTALEI: is not a valid LEI (ISO 17442: 20 characters, check digits)',
      'transfer_controls.other: is not a recognised field',
    ]);
  });

  test('keys an ERC-20 token by its canonical asset id, and refuses a document declaring two spellings of one', () => {
    const usdc = 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
    const v = new Validator();
    const controls = readTransferControlsSection(v, 'transfer_controls', { entities: { [lei]: { assets: { [usdc]: { approval_threshold: '1000' } } } } });
    assert.deepEqual(v.problems, []);
    assert.deepEqual([...controls!.entities.get(lei)!.assets.keys()], [usdc.toLowerCase()]);
    for (const spelling of [usdc, usdc.toLowerCase(), `eip155:1/erc20:0x${usdc.slice(-40).toUpperCase()}`]) {
      assert.deepEqual(controlsFor(controls!, lei, 'CRY-001', spelling), { approvalThreshold: u('1000'), firstUseHoldSeconds: 600 }, spelling);
    }
    const twice = new Validator();
    readTransferControlsSection(twice, 'transfer_controls', { defaults: { assets: { [usdc]: { daily_limit: '10' }, [usdc.toLowerCase()]: { daily_limit: '1000000' } } } });
    assert.deepEqual(twice.problems.map(formatProblem), [
      `transfer_controls.defaults.assets.${usdc.toLowerCase()}: is the asset ${usdc.toLowerCase()} again (also declared as "${usdc}"): declare each asset once`,
    ]);
  });

  test('is stored by apply, read by every node through its cache, and unchanged when applied again', async (t) => {
    const { ctx } = await testContext({ t, risk: 'off' });
    const apply = async (document: Record<string, unknown>) => {
      const { plan, problems } = await planApply(ctx, document);
      assert.ok(plan, problems.map(formatProblem).join('\n'));
      return (await executeApply(ctx, plan, { actor: 'test', via: 'cli' })).changes.filter((c) => c.kind === 'transfer_controls');
    };
    assert.deepEqual(controlsFor(await transferControls(ctx).get(), lei, 'TRE-001', 'USD'), { firstUseHoldSeconds: 600 }, 'nothing configured: no limits, the default hold');
    assert.deepEqual(await apply({ transfer_controls: section }), [{ kind: 'transfer_controls', id: 'transfer_controls', outcome: 'created' }]);
    assert.deepEqual(controlsFor(await transferControls(ctx).get(), lei, 'TRE-002', 'USD'), { approvalThreshold: u('250000'), firstUseHoldSeconds: 0 });
    assert.deepEqual(await apply({ transfer_controls: section }), [{ kind: 'transfer_controls', id: 'transfer_controls', outcome: 'unchanged' }]);
    assert.deepEqual(await apply({ transfer_controls: { defaults: { assets: { USD: { daily_limit: '10' } } } } }), [{ kind: 'transfer_controls', id: 'transfer_controls', outcome: 'updated' }]);
    assert.deepEqual(controlsFor(await transferControls(ctx).get(), lei, 'TRE-002', 'USD'), { dailyLimit: u('10'), firstUseHoldSeconds: 600 }, 'the whole section is replaced');
  });
});
