import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { migrate } from '../../../src/storage/database.ts';
import { migrations } from '../../../src/storage/migrations/index.ts';
import type { Database } from '../../../src/storage/schema.ts';
import { migrateToBefore, testDialects, type TestDialect } from '../../helpers/storage.ts';

// Migration 0069: revoking a client's refresh tokens (src/clients/store.ts `revokeRefreshTokens`:
// a firm's freeze, a risk suspension, apply's prune) finds them by an index, not by reading the table.

/** The plan of the statement that revokes a client's refresh tokens, as text. */
async function revocationPlan(db: Kysely<Database>, dialect: TestDialect): Promise<string> {
  const revoke = "update refresh_tokens set state = 'revoked' where client_id = 'broker-1' and state in ('active', 'rotated', 'superseded')";
  if (dialect.name === 'sqlite') {
    const { rows } = await sql<{ detail: string }>`explain query plan ${sql.raw(revoke)}`.execute(db);
    return rows.map((r) => r.detail).join('\n');
  }
  // An empty table is cheaper to read whole: the planner is told not to, so the plan shows what an index allows.
  return db.transaction().execute(async (trx) => {
    await sql`set local enable_seqscan = off`.execute(trx);
    const { rows } = await sql<{ 'QUERY PLAN': string }>`explain ${sql.raw(revoke)}`.execute(trx);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  });
}

for (const dialect of testDialects()) {
  describe(`migration 0069_refresh_tokens_client on ${dialect.name}`, () => {
    test("lets the revocation of a client's refresh tokens find them by client and state, where before it read the table", async (t) => {
      const database = await dialect.create(t);
      const db = database.storage.db;
      const names = Object.keys(migrations);
      assert.ok(names.includes('0069_refresh_tokens_client'), 'migration 0069 is registered');
      await migrateToBefore(database.storage, '0069_refresh_tokens_client');
      assert.match(await revocationPlan(db, dialect), /^SCAN refresh_tokens$|Seq Scan on refresh_tokens/m, 'before: the whole table read');

      await migrate(database.storage);
      assert.match(await revocationPlan(db, dialect), /(USING INDEX|Index Scan using|Bitmap Index Scan on) refresh_tokens_client_id_state/);
    });
  });
}
