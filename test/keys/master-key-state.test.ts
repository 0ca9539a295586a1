import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { eventually } from '../helpers/eventually.ts';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { attachKeyring, keyringOf, masterKeyId, masterKeyUnavailable, MasterKeyUnavailableError, onSealingChange, sealingKeyOf, type Keyring } from '../../src/keys/keyring.ts';
import { followRoot, loadMasterKeyring, rootRow } from '../../src/keys/master-key-state.ts';
import { rewrap } from '../../src/keys/rewrap.ts';
import { open, seal, sealedKeyIdOf } from '../../src/keys/sealed-box.ts';
import { createLogger } from '../../src/log.ts';
import { migrate, openStorage, type Storage } from '../../src/storage/database.ts';
import { noticesFor } from '../../src/storage/notices.ts';
import { testDialects, type TestDatabase } from '../helpers/storage.ts';

// Every node follows the master key the database seals with (src/keys/master-key-state.ts
// watchMasterKeyState, followRoot): when `clearance keys rewrap` begins, a node holding both keys
// seals with the new one, a node holding the old key alone seals nothing (fail closed).

/** Log lines written to a logger, parsed. */
function capturedLog(): { log: ReturnType<typeof createLogger>; lines: { level: number; msg: string; [field: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger('info', stream), lines };
}

const errorLevel = 50;
const warnLevel = 40;
const infoLevel = 30;

/** A process's keyring mid-rotation, sealing with the previous key (nothing read from a database). */
function keyring(options: { previous?: boolean } = {}): Keyring {
  const current = randomBytes(32);
  const previous = options.previous === false ? undefined : randomBytes(32);
  const ring: Keyring = { current, previous, sealing: previous ?? current, root: randomBytes(32) };
  attachKeyring(ring);
  return ring;
}


describe('following the root: what a node seals with', () => {
  test('a node holding both keys seals with the new key once the root names it, and says so once', () => {
    const ring = keyring();
    const { log, lines } = capturedLog();
    const sealedBefore = seal(ring.current, Buffer.from('before'), 'binding');
    assert.equal(sealedKeyIdOf(sealedBefore), masterKeyId(ring.previous!), 'the previous key seals until the rewrap begins');

    followRoot(ring, masterKeyId(ring.current), log);
    followRoot(ring, masterKeyId(ring.current), log);
    assert.equal(ring.sealing, ring.current);
    assert.equal(sealedKeyIdOf(seal(ring.current, Buffer.from('after'), 'binding')), masterKeyId(ring.current));
    assert.deepEqual(open(ring.current, sealedBefore, 'binding'), Buffer.from('before'), 'what the previous key sealed still opens');
    assert.equal(masterKeyUnavailable(ring.current), undefined, 'ready');
    assert.deepEqual(
      lines.map((l) => [l.level, l.sealingMasterKeyId]),
      [[infoLevel, masterKeyId(ring.current)]],
      'one line for the switch, however often it looks',
    );
  });

  test('a node holding the old key alone seals nothing once the root names the new key: refused with key ids, not ready, one error logged', () => {
    const ring = keyring({ previous: false });
    const { log, lines } = capturedLog();
    const sealedBefore = seal(ring.current, Buffer.from('sealed before'), 'binding');
    const newId = masterKeyId(randomBytes(32));

    for (let look = 0; look < 3; look++) followRoot(ring, newId, log);
    assert.equal(ring.sealing, undefined);
    assert.equal(ring.movedTo, newId);
    assert.throws(() => sealingKeyOf(ring.current), MasterKeyUnavailableError);
    assert.throws(
      () => seal(ring.current, Buffer.from('x'), 'binding'),
      (e: unknown) => e instanceof MasterKeyUnavailableError && e.message.includes(newId) && e.message.includes(masterKeyId(ring.current)),
      'never an old-key value: refused, naming the key ids',
    );
    assert.equal(masterKeyUnavailable(ring.current), `master key unavailable: the database seals with master key ${newId}, and this node holds ${masterKeyId(ring.current)}`);
    // What the old key sealed and no rewrap re-sealed yet still opens; what the new key sealed is unavailable here, not a bad value.
    assert.deepEqual(open(ring.current, sealedBefore, 'binding'), Buffer.from('sealed before'));
    const underNewKey = seal(randomBytes(32), Buffer.from('x'), 'binding').replace(/^v2\.[0-9a-f]+\./, `v2.${newId}.`);
    assert.throws(() => open(ring.current, underNewKey, 'binding'), MasterKeyUnavailableError);

    const errors = lines.filter((l) => l.level >= errorLevel);
    assert.equal(errors.length, 1, 'one error, however often it looks');
    assert.match(errors[0]!.msg, /does not hold/);
    assert.equal(errors[0]!.sealingMasterKeyId, newId);
    assert.equal(errors[0]!.masterKeyId, masterKeyId(ring.current));
    assert.ok(!JSON.stringify(lines).includes(ring.current.toString('hex')), 'key ids only');
  });

  test('a node holding the old key alone signs no audit checkpoint, even with the audit key it opened before', async (t) => {
    const ring = keyring({ previous: false });
    const dir = mkdtempSync(join(tmpdir(), 'clearance-audit-key-moved-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const storage = openStorage({ sqlitePath: join(dir, 'clearance.db') });
    t.after(() => storage.close());
    await migrate(storage);
    const keys = new AuditKeys(storage.db, ring.current, new ManualClock(0));
    const origin = 'https://clearance.test';
    assert.ok((await keys.signingKey(origin)).keyId, 'it signs while it holds the sealing key');
    assert.equal(keys.unavailable(), undefined);
    followRoot(ring, masterKeyId(randomBytes(32)));
    assert.match(String(keys.unavailable()), /^master key unavailable/);
    await assert.rejects(keys.signingKey(origin), MasterKeyUnavailableError, 'the opened key is not used: the sealer gives its lock up');
  });

  test('a node left without the key serves again when the root names a key it holds', () => {
    const ring = keyring();
    const { log, lines } = capturedLog();
    followRoot(ring, masterKeyId(randomBytes(32)), log);
    assert.ok(masterKeyUnavailable(ring.current));
    followRoot(ring, masterKeyId(ring.current), log);
    assert.equal(ring.sealing, ring.current);
    assert.equal(ring.movedTo, undefined);
    assert.equal(masterKeyUnavailable(ring.current), undefined);
    assert.deepEqual(lines.map((l) => l.level), [errorLevel, warnLevel]);
  });

  test('tells what registered for sealing changes once per change (the console client is registered again)', () => {
    const ring = keyring();
    let told = 0;
    onSealingChange(ring.current, () => told++);
    followRoot(ring, masterKeyId(ring.previous!));
    assert.equal(told, 0, 'no change');
    followRoot(ring, masterKeyId(ring.current));
    followRoot(ring, masterKeyId(ring.current));
    assert.equal(told, 1);
    followRoot(ring, 'ffffffffffffffff');
    assert.equal(told, 2);
  });
});

const oldKey = randomBytes(32).toString('hex');
const newKey = randomBytes(32).toString('hex');

interface Node {
  master: Buffer;
  storage: Storage;
  lines: ReturnType<typeof capturedLog>['lines'];
  /** Reads of the root row made through this node's storage. */
  rootReads: () => number;
}

/** A process on `database` with this master key configuration, following the root every `refreshMs`. */
async function node(t: TestContext, database: TestDatabase, env: NodeJS.ProcessEnv, refreshMs: number, storageOptions: { listenForChanges?: boolean } = {}): Promise<Node> {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-master-key-state-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  let reads = 0;
  const storage = openStorage({ ...database.options, ...storageOptions, onQuery: (sql) => void (/"master_key_root"/.test(sql) && /^select/i.test(sql) && reads++) });
  t.after(() => storage.close());
  const { log, lines } = capturedLog();
  const master = await loadMasterKeyring(loadConfig({ CLEARANCE_DATA_DIR: dataDir, ...env }), storage.db, log, { refreshMs });
  return { master: master.key, storage, lines, rootReads: () => reads };
}

/** What `clearance keys rewrap` does, from a process of its own with both keys. */
async function runRewrap(t: TestContext, database: TestDatabase): Promise<void> {
  const cli = await node(t, database, { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey }, 3_600_000);
  const audit = { record: async () => undefined };
  await rewrap({ storage: cli.storage, clock: new ManualClock(), audit } as never, cli.master, { actor: 'cli:test', settleMs: 0 });
}

for (const dialect of testDialects()) {
  describe(`watching the root on ${dialect.name}`, () => {
    test('every node looks at the root on its timer: when the rewrap begins, the node with both keys seals with the new key, the node with the old key alone seals nothing', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const oldOnly = await node(t, database, { CLEARANCE_MASTER_KEY: oldKey }, 20);
      const both = await node(t, database, { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey }, 20);
      assert.equal(keyringOf(both.master)!.sealing, keyringOf(both.master)!.previous, 'staged: the old key seals');
      assert.equal(keyringOf(oldOnly.master)!.sealing, oldOnly.master);

      await runRewrap(t, database);
      assert.equal((await rootRow(database.storage.db))!.master_key_id, masterKeyId(Buffer.from(newKey, 'hex')));
      await eventually(() => keyringOf(both.master)!.sealing === both.master, 'the node with both keys seals with the new key');
      await eventually(() => keyringOf(oldOnly.master)!.sealing === undefined, 'the node with the old key alone seals nothing');
      assert.equal(sealedKeyIdOf(seal(both.master, Buffer.from('x'), 'b')), masterKeyId(both.master));
      assert.throws(() => seal(oldOnly.master, Buffer.from('x'), 'b'), MasterKeyUnavailableError);
      assert.match(masterKeyUnavailable(oldOnly.master)!, new RegExp(`seals with master key ${masterKeyId(both.master)}, and this node holds ${masterKeyId(oldOnly.master)}`));

      // It goes on looking, and says it once.
      const reads = oldOnly.rootReads();
      await eventually(() => oldOnly.rootReads() >= reads + 3, 'three more looks');
      assert.equal(oldOnly.lines.filter((l) => l.level >= errorLevel).length, 1);
      assert.equal(both.lines.filter((l) => /rewrap has begun/.test(l.msg)).length, 1);
    });

    test('a node started with the old key alone after the rewrap began is refused; with both keys it seals with the new one at once', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      await node(t, database, { CLEARANCE_MASTER_KEY: oldKey }, 3_600_000);
      await runRewrap(t, database);
      await assert.rejects(node(t, database, { CLEARANCE_MASTER_KEY: oldKey }, 3_600_000), /was replaced by/);
      const restarted = await node(t, database, { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey }, 3_600_000);
      assert.equal(keyringOf(restarted.master)!.sealing, restarted.master);
    });
  });
}

const postgres = testDialects().find((d) => d.name === 'postgres');

describe('watching the root through change notices', { skip: postgres ? false : 'needs TEST_DATABASE_URL' }, () => {
  test('on PostgreSQL the rewrap’s begin switches a listening node at once, with no timer tick (an hour away)', async (t) => {
    const database = await postgres!.create(t);
    await migrate(database.storage);
    const oldOnly = await node(t, database, { CLEARANCE_MASTER_KEY: oldKey }, 3_600_000, { listenForChanges: true });
    const both = await node(t, database, { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey }, 3_600_000, { listenForChanges: true });
    await eventually(() => noticesFor(oldOnly.storage.db)!.listening && noticesFor(both.storage.db)!.listening, 'both listen for change notices');
    assert.equal(keyringOf(both.master)!.sealing, keyringOf(both.master)!.previous);

    await runRewrap(t, database);
    await eventually(() => keyringOf(both.master)!.sealing === both.master, 'the notice switches the node with both keys');
    await eventually(() => keyringOf(oldOnly.master)!.sealing === undefined, 'and stops the node with the old key alone');
  });
});
