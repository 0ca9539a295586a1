import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { Database } from '../storage/schema.ts';
import { noticesFor } from '../storage/notices.ts';
import { attachKeyring, keyringOf, masterKeyId, setSealing, type Keyring } from './keyring.ts';
import { MasterKeyError, pkcs11MasterKeySlot, rememberUnwrappedMasterKey, resolveMasterKey, type MasterKey } from './master-key.ts';
import { unwrapMasterKey } from './master-key-pkcs11.ts';
import { open, seal } from './sealed-box.ts';

/** What binds the sealed derivation root to its row. */
export const rootBinding = 'master_key_root';

/**
 * How often every node looks which master key the database seals with (the root row): a node with
 * both keys switches to the new one when a rewrap begins; a node without it stops sealing.
 */
export const sealingRefreshMs = 1000;

/** The generation `clearance keys rewrap` bumps when it re-seals the root: on PostgreSQL its change notice makes every node look at once. */
export const masterKeyGeneration = 'master_key';

/**
 * Resolves the configured master key(s) and the database's derivation root, and attaches them as
 * the keyring (keyring.ts) of the master key every component is handed. Called once per process
 * by openContext, after migrations (docs/keys.md "The master key"):
 *
 * 1. the key: CLEARANCE_MASTER_KEY (or _FILE), the development file, or a data key unwrapped by
 *    the PKCS#11 token (CLEARANCE_MASTER_KEY_PKCS11_LABEL, made on first use); likewise the
 *    previous key of a rotation (CLEARANCE_PREVIOUS_MASTER_KEY, _FILE or _PKCS11_LABEL);
 * 2. the root row: made at the first start on this version — for a database that has served
 *    before, the bytes of the master key it has used (the previous one if given), so every
 *    pairwise subject, pseudonym and digest stays what it was; for a new database, 32 random bytes;
 * 3. the check: the root must open with one of the configured keys — else this is not the
 *    database's key (or the key a completed rotation replaced), and the start is refused. The key
 *    that sealed it seals new values;
 * 4. the watch: every node looks at the root row every `sealingRefreshMs` (and at once on a change
 *    notice), for as long as it runs — a node with the previous and the new key switches to the new
 *    one when the rewrap begins; a node without the key the database now seals with stops sealing
 *    (`watchMasterKeyState`).
 */
export async function loadMasterKeyring(config: Config, db: Kysely<Database>, log?: Logger, options: { refreshMs?: number } = {}): Promise<MasterKey> {
  const master = config.masterKeyPkcs11Label
    ? rememberUnwrappedMasterKey(pkcs11MasterKeySlot(config, config.masterKeyPkcs11Label), await unwrapMasterKey(config, db, config.masterKeyPkcs11Label, { create: true }))
    : resolveMasterKey(config);
  const previous = config.previousMasterKey ?? (config.previousMasterKeyPkcs11Label ? await unwrapMasterKey(config, db, config.previousMasterKeyPkcs11Label, { create: false }) : undefined);
  const current = master.key;
  if (previous && masterKeyId(previous) === masterKeyId(current)) throw new MasterKeyError('the previous master key is the master key itself: set a previous key only while rotating to a new one');

  const row = (await rootRow(db)) ?? (await createRoot(db, previous ?? current));
  const sealing = [current, previous].find((key) => key !== undefined && masterKeyId(key) === row.master_key_id);
  if (!sealing) throw new MasterKeyError(await refusal(db, row.master_key_id, current, previous));
  const root = open(sealing, row.sealed_root, rootBinding);
  const keyring: Keyring = { current, previous, sealing, root };
  attachKeyring(keyring);

  if (previous) {
    const completed = await completedRewrapTo(db, masterKeyId(current));
    if (completed) {
      log?.warn({ masterKeyId: masterKeyId(current), previousMasterKeyId: masterKeyId(previous) }, 'CLEARANCE_PREVIOUS_MASTER_KEY is no longer needed: the rewrap to this master key has completed; remove it at the next restart');
    } else if (sealing === previous) {
      log?.info({ masterKeyId: masterKeyId(current), previousMasterKeyId: masterKeyId(previous) }, 'master key rotation staged: sealing with the previous key until clearance keys rewrap begins');
    }
  }
  watchMasterKeyState(db, keyring, options.refreshMs ?? sealingRefreshMs, log);
  return master;
}

/** The root row, if the database has one yet. */
export async function rootRow(db: Kysely<Database>): Promise<Database['master_key_root'] | undefined> {
  return db.selectFrom('master_key_root').selectAll().where('id', '=', 'root').executeTakeFirst();
}

/**
 * The first start on this version writes the root: two nodes starting at once agree on the first
 * one written. A database that has served before (it has a signing key: openContext makes one at
 * every first start) keeps deriving from its master key's bytes; a new one gets a random root.
 */
async function createRoot(db: Kysely<Database>, key: Buffer): Promise<Database['master_key_root']> {
  const served = await db.selectFrom('signing_keys').select('kid').limit(1).executeTakeFirst();
  const root = served ? Buffer.from(key) : randomBytes(32);
  await db
    .insertInto('master_key_root')
    .values({ id: 'root', sealed_root: seal(key, root, rootBinding), master_key_id: masterKeyId(key), origin: served ? 'master-key' : 'random', created_at: Date.now() })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  return (await rootRow(db))!;
}

/** Why no configured key is the database's, and what to set. */
async function refusal(db: Kysely<Database>, sealedWith: string, current: Buffer, previous: Buffer | undefined): Promise<string> {
  const ours = masterKeyId(current);
  const rotatedAway = await db.selectFrom('master_key_rewraps').selectAll().where('from_key_id', '=', ours).where('to_key_id', '=', sealedWith).orderBy('started_at', 'desc').executeTakeFirst();
  if (rotatedAway) {
    const when = new Date(Number(rotatedAway.started_at)).toISOString();
    return rotatedAway.completed_at !== null
      ? `the master key ${ours} was replaced by ${sealedWith} (clearance keys rewrap completed ${new Date(Number(rotatedAway.completed_at)).toISOString()}): it no longer opens this database; set CLEARANCE_MASTER_KEY to the new key`
      : `a rotation from master key ${ours} to ${sealedWith} is under way (clearance keys rewrap began ${when}): set CLEARANCE_MASTER_KEY to the new key and CLEARANCE_PREVIOUS_MASTER_KEY to ${ours}`;
  }
  const configured = previous ? `${ours} (and previous ${masterKeyId(previous)})` : ours;
  return (
    `this database's secrets are sealed with master key ${sealedWith}, and the configured master key is ${configured}: ` +
    'set the CLEARANCE_MASTER_KEY this database uses (to rotate it, set the new key as CLEARANCE_MASTER_KEY and the one in use as CLEARANCE_PREVIOUS_MASTER_KEY, then run clearance keys rewrap)'
  );
}

async function completedRewrapTo(db: Kysely<Database>, keyId: string): Promise<Database['master_key_rewraps'] | undefined> {
  return db.selectFrom('master_key_rewraps').selectAll().where('to_key_id', '=', keyId).where('completed_at', 'is not', null).limit(1).executeTakeFirst();
}

/**
 * Follows the key the database seals with (the root row's `master_key_id`), on every node, for as
 * long as the process runs: every `everyMs`, and at once on PostgreSQL when `clearance keys rewrap`
 * re-seals the root (its `master_key` change notice).
 *
 * - a configured key (the new one, on a node given both): it seals from now on. The rewrap waits
 *   longer than `everyMs` before its last sweep (rewrap.ts `settleMs`), so what a node sealed with
 *   the previous key just before it switched is re-sealed too;
 * - a key this node does not hold (it was started with the old key alone, and the rewrap began):
 *   it seals nothing from now on — every write that would seal fails with MasterKeyUnavailableError
 *   (503 temporarily_unavailable), never an old-key or a plaintext value; what authenticates
 *   (master-key.ts authenticationKey) is refused too; `/readyz` reports it not ready with the
 *   reason (server.ts), and one error is logged. Restarted with the new key, it serves again.
 *
 * A failed look (the database away) is retried at the next. The timer does not keep the process
 * alive, and stops when another keyring was attached to the key since (the process opened the
 * database again: that one watches).
 */
export function watchMasterKeyState(db: Kysely<Database>, keyring: Keyring, everyMs: number, log?: Logger): void {
  let looking = false;
  let again = false;
  const look = (): void => {
    if (looking) {
      again = true;
      return;
    }
    looking = true;
    rootRow(db)
      .then((row) => {
        if (keyringOf(keyring.current) !== keyring) return stop();
        if (!row) return;
        followRoot(keyring, row.master_key_id, log);
      })
      .catch(() => {})
      .finally(() => {
        looking = false;
        if (again) {
          again = false;
          look();
        }
      });
  };
  const timer = setInterval(look, everyMs);
  timer.unref();
  const unsubscribe = noticesFor(db)?.subscribe(masterKeyGeneration, look);
  function stop(): void {
    clearInterval(timer);
    unsubscribe?.();
  }
}

/** Makes the keyring seal with the configured key that sealed the root (`sealedWith`), or with none when neither did. */
export function followRoot(keyring: Keyring, sealedWith: string, log?: Logger): void {
  const held = [keyring.current, keyring.previous].find((key) => key !== undefined && masterKeyId(key) === sealedWith);
  if (held === keyring.sealing) return;
  const was = keyring.sealing;
  setSealing(keyring, held, sealedWith);
  const ids = { masterKeyId: masterKeyId(keyring.current), ...(keyring.previous ? { previousMasterKeyId: masterKeyId(keyring.previous) } : {}), sealingMasterKeyId: sealedWith };
  if (!held) {
    log?.error(ids, 'the database now seals with a master key this node does not hold (clearance keys rewrap began): it seals nothing and reports not ready; restart it with the new key as CLEARANCE_MASTER_KEY');
  } else if (!was) {
    log?.warn(ids, 'the database seals with a master key this node holds again: sealing and ready');
  } else {
    log?.info(ids, 'master key rewrap has begun: sealing with the new master key');
  }
}
