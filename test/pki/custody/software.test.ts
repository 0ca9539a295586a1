import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CustodyError } from '../../../src/pki/custody/custody.ts';
import { SoftwareCustody } from '../../../src/pki/custody/software.ts';
import { testContext } from '../../helpers/storage.ts';
import { custodyContract } from './contract.ts';

custodyContract('software custody', async (t) => {
  const { ctx } = await testContext({ t });
  return new SoftwareCustody(ctx.storage.db, randomBytes(32), ctx.clock);
});

test('a software key is sealed at rest: another master key does not open it, and a swapped public key is refused', async (t) => {
  const { ctx } = await testContext({ t });
  const master = randomBytes(32);
  const key = await new SoftwareCustody(ctx.storage.db, master, ctx.clock).generate('sealed', 'EC-P256');
  const row = await ctx.storage.db.selectFrom('custody_keys').selectAll().where('ref', '=', key.ref).executeTakeFirstOrThrow();
  assert.ok(!row.private_key.includes('PRIVATE'), 'no PEM at rest');
  await assert.rejects(new SoftwareCustody(ctx.storage.db, randomBytes(32), ctx.clock).load(key.ref), CustodyError);
  const other = await new SoftwareCustody(ctx.storage.db, master, ctx.clock).generate('other', 'EC-P256');
  const otherRow = await ctx.storage.db.selectFrom('custody_keys').select('public_key').where('ref', '=', other.ref).executeTakeFirstOrThrow();
  await ctx.storage.db.updateTable('custody_keys').set({ public_key: otherRow.public_key }).where('ref', '=', key.ref).execute();
  await assert.rejects(new SoftwareCustody(ctx.storage.db, master, ctx.clock).load(key.ref), /does not match/);
});
