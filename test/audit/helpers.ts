/** Shared setup for the audit tests: a migrated store with a recorder, a sealer and its keys. */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { AuditSealer, type SealerOptions } from '../../src/audit/sealer.ts';
import { sqliteFileOf, verifyStore, type VerifyOptions } from '../../src/audit/verify.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate, type Storage } from '../../src/storage/database.ts';
import type { Database } from '../../src/storage/schema.ts';
import type { TestDatabase, TestDialect } from '../helpers/storage.ts';

export const origin = 'clearance.test/audit';

export interface AuditFixture {
  database: TestDatabase;
  storage: Storage;
  db: Kysely<Database>;
  clock: ManualClock;
  masterKey: Buffer;
  keys: AuditKeys;
  recorder: AuditRecorder;
  sealer: AuditSealer;
  /** Records `count` events (awaiting each batch) and seals them. */
  fill(count: number, make?: (i: number) => AuditEvent): Promise<void>;
  verify(options?: Partial<VerifyOptions>): ReturnType<typeof verifyStore>;
}

export function sampleEvent(i: number): AuditEvent {
  return {
    type: i % 3 === 0 ? 'policy.denied' : 'token.issued',
    requestId: `req-${i}`,
    txn: `txn-${Math.floor(i / 4)}`,
    actor: `client-${i % 7}`,
    subject: `user-${i % 11}`,
    client: `client-${i % 7}`,
    audience: 'https://api.example.com/execution',
    scopes: ['order:create'],
    ...(i % 3 === 0 ? { decision: { allow: false, reasons: ['notional above mandate'], policyVersion: 'v7' } } : {}),
    details: { jti: `jti-${i}`, n: i },
  };
}

export async function auditFixture(dialect: TestDialect, t: Pick<TestContext, 'after'>, sealerOptions: Partial<SealerOptions> = {}): Promise<AuditFixture> {
  const database = await dialect.create(t);
  const storage = database.storage;
  await migrate(storage);
  const clock = new ManualClock(1_767_225_600_000);
  const masterKey = randomBytes(32);
  const keys = new AuditKeys(storage.db, masterKey, clock);
  const recorder = new AuditRecorder(storage.db, { clock, node: 'test-node' });
  const sealer = new AuditSealer(storage.db, { clock, keys, origin, ...sealerOptions });
  t.after(() => recorder.close());
  return {
    database,
    storage,
    db: storage.db,
    clock,
    masterKey,
    keys,
    recorder,
    sealer,
    async fill(count, make = sampleEvent) {
      const base = Number((await storage.db.selectFrom('audit_events').select(({ fn }) => fn.countAll().as('n')).executeTakeFirst())?.n ?? 0);
      for (let i = 0; i < count; i += 500) {
        const batch = [];
        for (let j = i; j < Math.min(count, i + 500); j++) batch.push(recorder.record(make(base + j)));
        await Promise.all(batch);
        clock.advance(10);
        await sealer.sealAll();
      }
    },
    async verify(options = {}) {
      // On SQLite the lookup-index check runs in its worker thread, as `clearance audit verify` does.
      const sqliteFile = sqliteFileOf(storage);
      return verifyStore(storage.db, { keys: await keys.publicKeys(), ...(sqliteFile ? { sqliteFile } : {}), ...options });
    },
  };
}

/** Lets a test rewrite the append-only tables, as an attacker with database access could. */
export async function asAttacker(storage: Storage, change: (db: Kysely<Database>) => Promise<void>): Promise<void> {
  const tables = ['audit_events', 'audit_leaves', 'audit_index', 'audit_nodes', 'audit_checkpoints', 'audit_prunings', 'audit_keys'];
  if (storage.dialect === 'postgres') {
    for (const table of tables) await sql.raw(`alter table ${table} disable trigger user`).execute(storage.db);
  } else {
    for (const table of tables) {
      await sql.raw(`drop trigger if exists ${table}_no_update`).execute(storage.db);
      await sql.raw(`drop trigger if exists ${table}_no_delete`).execute(storage.db);
    }
  }
  await change(storage.db);
}

/** The seq of the event at `leafIndex`. */
export async function seqOfLeaf(db: Kysely<Database>, leafIndex: number): Promise<number> {
  const row = await db.selectFrom('audit_leaves').select('event_seq').where('leaf_index', '=', leafIndex).executeTakeFirstOrThrow();
  return row.event_seq;
}
