import { randomBytes } from 'node:crypto';
import { derivedKey } from '../keys/master-key.ts';
import type { CompiledQuery, Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { open, seal } from '../keys/sealed-box.ts';
import { masterKeyId, opensKeyId, sealingKeyId } from '../keys/keyring.ts';
import { GenerationCache } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { AuditEvent, StoredAuditEvent } from './events.ts';
import { dataSubjectOf, hasPersonalFields, openPersonalFields, PersonalDataError, sealedFieldsOf, withPersonalFields, type PersonalView, type SubjectKey } from './personal-data.ts';

export interface SubjectKeyTables {
  /**
   * One AES-256 data key per data subject and generation (migration 0056), sealed by the master key
   * (src/keys/sealed-box.ts, associated data `audit_subject_keys:<kid>`). Erasure overwrites
   * `sealed_key` with null and keeps the row as a tombstone: when, by whom, why.
   */
  audit_subject_keys: {
    /** The key id named by every event it seals (`details.personal.kid`): random, says nothing. */
    kid: string;
    /** The data subject: a person's id, or a pseudonym (`anon:…`, personal-data.ts pseudonymOf). */
    subject: string;
    /** 1, 2, …: a subject recorded again after an erasure gets a new key, never the destroyed one. */
    generation: number;
    /** The sealed key; null once erased. */
    sealed_key: string | null;
    /** The master key that sealed it (sealed-box.ts masterKeyId). */
    master_key_id: string;
    created_at: number;
    erased_at: number | null;
    erased_by: string | null;
    erase_reason: string | null;
  };
}

/** The generation bumped by an erasure: every node's write cache of subject keys is emptied. */
export const subjectKeysGeneration = 'audit_subject_keys';

/** The key of pseudonymous subject ids (personal-data.ts pseudonymOf), derived from the master key. */
export function pseudonymKeyOf(masterKey: Buffer): Buffer {
  return derivedKey(masterKey, 'clearance audit pseudonym v1');
}

// This process's instances per database: an erasure made here empties their caches at once.
const instances = new WeakMap<Kysely<Database>, Set<WeakRef<SubjectKeys>>>();

/**
 * Drops the cached keys of every SubjectKeys of this process reading `db` (an erasure made here);
 * other processes and nodes drop theirs through the generation bump (notice or next check).
 */
export function invalidateSubjectKeys(db: Kysely<Database>): void {
  const own = instances.get(db);
  if (!own) return;
  for (const ref of own) {
    const keys = ref.deref();
    if (keys) keys.invalidate();
    else own.delete(ref);
  }
}

type Executor = Kysely<Database> | Transaction<Database>;
type KeyRow = Pick<Database['audit_subject_keys'], 'kid' | 'subject' | 'generation' | 'sealed_key' | 'master_key_id' | 'erased_at'>;

/** The keys `resolve` found; `remember` caches them (after the transaction that created them committed). */
export interface ResolvedKeys {
  keys: Map<string, SubjectKey>;
  remember(): void;
}

/**
 * The per-subject data keys of the audit log (docs/privacy.md "Keys").
 *
 * Writing: a node caches each subject's current key in memory, so an event with personal fields
 * costs no database read once its subject was seen. The cache is a generation cache
 * (src/storage/generations.ts): an erasure bumps `audit_subject_keys`, and every node drops all its
 * cached keys — at once on PostgreSQL through the change notice, else at its next check (1 s). A
 * subject's key is created once, under the unique (subject, generation): two nodes racing both
 * insert with ON CONFLICT DO NOTHING and then read back the one row that won.
 *
 * Reading never uses the cache: a read opens the keys it needs from the database, so a destroyed
 * key reveals nothing anywhere from the moment the erasure commits.
 */
export class SubjectKeys {
  readonly pseudonymKey: Buffer;
  readonly #db: Kysely<Database>;
  readonly #masterKey: Buffer;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Map<string, SubjectKey>>;
  readonly #fetching = new Map<string, Promise<SubjectKey>>();
  /** Subjects a transaction of this node is betting has no key yet (`cached`), until it settles. */
  readonly #bets = new Map<string, Promise<void>>();

  constructor(db: Kysely<Database>, masterKey: Buffer, clock: Clock) {
    this.#db = db;
    this.#masterKey = masterKey;
    this.#clock = clock;
    this.pseudonymKey = pseudonymKeyOf(masterKey);
    // A new generation is a new, empty map: the keys cached before an erasure are all dropped.
    this.#cache = new GenerationCache(db, subjectKeysGeneration, async () => new Map<string, SubjectKey>(), clock);
    let own = instances.get(db);
    if (!own) instances.set(db, (own = new Set()));
    own.add(new WeakRef(this));
  }

  /** The data subject of an event with personal fields, or undefined (one scan of its details' names). */
  subjectOf(event: AuditEvent): string | undefined {
    return hasPersonalFields(event) ? dataSubjectOf(event, this.pseudonymKey) : undefined;
  }

  /** The subject's cached key, when the cache is fresh and holds it: no promise, no database. */
  peek(subject: string): SubjectKey | undefined {
    return this.#cache.peek()?.get(subject);
  }

  /**
   * The current keys of `subjects`, created where a subject has none (or only destroyed ones).
   * Without `trx`, each key is written and committed before this resolves — durable before any
   * event sealed with it — and cached at once. With `trx`, keys are written in it and cached by
   * `remember()`, which the caller calls once it committed (a rolled-back key is never used).
   * `haveKeys`: the subjects are known to have a key (a `firstKey` bet lost): it is read first.
   */
  async resolve(subjects: Iterable<string>, trx?: Transaction<Database>, options: { haveKeys?: boolean } = {}): Promise<ResolvedKeys> {
    // The map of this generation: a key read before an erasure never lands in the next one. Inside
    // a transaction the generation is not read (on SQLite the database waits for that transaction):
    // a cache not fresh then is passed by, and the keys read in the transaction are not cached.
    const cache = trx ? this.#cache.peek() : await this.#cache.get();
    const keys = new Map<string, SubjectKey>();
    for (const subject of subjects) {
      if (keys.has(subject)) continue;
      const cached = cache?.get(subject);
      if (cached) {
        keys.set(subject, cached);
        continue;
      }
      if (trx) {
        keys.set(subject, await this.#fetch(subject, trx, options.haveKeys));
        continue;
      }
      let fetching = this.#fetching.get(subject);
      if (!fetching) {
        fetching = this.#fetch(subject, this.#db, options.haveKeys).finally(() => this.#fetching.delete(subject));
        this.#fetching.set(subject, fetching);
      }
      const key = await fetching;
      cache!.set(subject, key);
      keys.set(subject, key);
    }
    return { keys, remember: () => (trx && cache ? keys.forEach((key, subject) => cache.set(subject, key)) : undefined) };
  }

  /**
   * The cached keys of `subjects` (the generation checked when due, as `resolve` does), the
   * subjects this node holds none for (sorted: transactions that bet on several take their rows in
   * one order, and never wait on each other in a cycle), `remember`, which caches keys made for
   * those (call it once the transaction that wrote them committed: into this generation's map,
   * never a later one), and `settled`, which the caller must call once its transaction settled.
   * Until then the missing subjects are this caller's bets: a call of this node for one of them
   * waits for that bet first, then finds its key cached (the bet won) or bets itself — concurrent
   * first events of one subject on one node are not sent to lose against each other.
   */
  async cached(subjects: Iterable<string>): Promise<{ keys: Map<string, SubjectKey>; missing: string[]; remember(made: Map<string, SubjectKey>): void; settled(): void }> {
    const unique = [...new Set(subjects)];
    let cache = await this.#cache.get();
    for (let waits = 0; waits < 3; waits++) {
      const pending = unique.flatMap((subject) => this.#bets.get(subject) ?? []);
      if (pending.length === 0) break;
      await Promise.all(pending);
      cache = await this.#cache.get();
    }
    const keys = new Map<string, SubjectKey>();
    const missing: string[] = [];
    for (const subject of unique) {
      const key = cache.get(subject);
      if (key) keys.set(subject, key);
      else missing.push(subject);
    }
    missing.sort();
    // Taken at once (no turn of the event loop since the cache was read): the bets are this caller's.
    let release!: () => void;
    const bet = new Promise<void>((resolve) => (release = resolve));
    for (const subject of missing) this.#bets.set(subject, bet);
    return {
      keys,
      missing,
      remember: (made) => made.forEach((key, subject) => cache.set(subject, key)),
      settled: () => {
        for (const subject of missing) if (this.#bets.get(subject) === bet) this.#bets.delete(subject);
        release();
      },
    };
  }

  /**
   * A first key for `subject` (generation 1) and the statement that writes it, for a transaction
   * that bets the subject has none: the statement changes no row when it has (then nothing of that
   * transaction may be written: its events were sealed under a key that does not exist).
   */
  firstKey(subject: string): { key: SubjectKey; insert: CompiledQuery } {
    const kid = `psk_${randomBytes(16).toString('hex')}`;
    const key = randomBytes(32);
    const insert = this.#db
      .insertInto('audit_subject_keys')
      .values(this.#keyRow(kid, subject, 1, key))
      .onConflict((oc) => oc.columns(['subject', 'generation']).doNothing())
      .compile();
    return { key: { kid, key }, insert };
  }

  /**
   * The statement reading `subject`'s latest key, for a flight that bets it has none (`firstKey`,
   * sent before it); `latestFrom` makes its answer a key once the bet lost: the subject's live key,
   * or undefined when it has none the read saw, or only an erased one (then `resolve` decides).
   */
  latestKey(subject: string): CompiledQuery {
    return this.#latestQuery(this.#db, subject).compile();
  }

  /**
   * The statement that changes `kid`'s row while it is not erased, for a transaction whose events
   * are sealed under a key read before it (a bet that lost): with the expectation of one row, that
   * transaction writes nothing once the key was erased meanwhile, and on PostgreSQL it holds the
   * row, so an erasure waits for it.
   */
  keptLive(kid: string): CompiledQuery {
    return this.#db.updateTable('audit_subject_keys').set((eb) => ({ kid: eb.ref('kid') })).where('kid', '=', kid).where('sealed_key', 'is not', null).compile();
  }

  latestFrom(rows: readonly unknown[]): SubjectKey | undefined {
    const latest = rows[0] as KeyRow | undefined;
    return latest?.sealed_key ? { kid: latest.kid, key: this.#open(latest) } : undefined;
  }

  /** Drops every cached key (this node): the next event reads the database. */
  invalidate(): void {
    this.#cache.invalidate();
  }

  /**
   * The subject's live key. The first event about a subject makes its key in one round trip
   * (generation 1); a subject seen before — on another node, before a restart, or erased — conflicts
   * there and is read, or its next generation made. The unique (subject, generation) settles a race.
   */
  async #fetch(subject: string, db: Executor, haveKey = false): Promise<SubjectKey> {
    const first = haveKey ? undefined : await this.#create(subject, 1, db);
    if (first) return first;
    for (let attempt = 0; attempt < 5; attempt++) {
      const latest = await this.#latestQuery(db, subject).executeTakeFirst();
      if (latest?.sealed_key) return { kid: latest.kid, key: this.#open(latest) };
      // The latest was erased: never that one again, a new generation.
      const created = await this.#create(subject, Number(latest?.generation ?? 0) + 1, db);
      if (created) return created;
    }
    throw new Error(`no key could be made for audit subject ${subject}`);
  }

  /** Writes a new key for (subject, generation); undefined when that generation exists already. */
  async #create(subject: string, generation: number, db: Executor): Promise<SubjectKey | undefined> {
    const kid = `psk_${randomBytes(16).toString('hex')}`;
    const key = randomBytes(32);
    const written = await db
      .insertInto('audit_subject_keys')
      .values(this.#keyRow(kid, subject, generation, key))
      .onConflict((oc) => oc.columns(['subject', 'generation']).doNothing())
      .returning('kid')
      .executeTakeFirst();
    return written ? { kid, key } : undefined;
  }

  #latestQuery(db: Executor, subject: string) {
    return db.selectFrom('audit_subject_keys').select(['kid', 'subject', 'generation', 'sealed_key', 'master_key_id', 'erased_at']).where('subject', '=', subject).orderBy('generation', 'desc').limit(1);
  }

  /** The stored row of a new key: sealed under the master key, bound to its id. */
  #keyRow(kid: string, subject: string, generation: number, key: Buffer): Database['audit_subject_keys'] {
    return { kid, subject, generation, sealed_key: seal(this.#masterKey, key, `audit_subject_keys:${kid}`), master_key_id: sealingKeyId(this.#masterKey), created_at: this.#clock.now(), erased_at: null, erased_by: null, erase_reason: null };
  }

  #open(row: KeyRow): Buffer {
    return openKeyRow(this.#masterKey, row);
  }
}

/** Opens a stored key; refuses one sealed by another master key, naming both. */
function openKeyRow(masterKey: Buffer, row: KeyRow): Buffer {
  const ours = masterKeyId(masterKey);
  if (!opensKeyId(masterKey, row.master_key_id)) {
    throw new Error(`audit subject key ${row.kid} was sealed with master key ${row.master_key_id}, but the configured master key is ${ours}`);
  }
  return open(masterKey, row.sealed_key!, `audit_subject_keys:${row.kid}`);
}

/**
 * What a reader is shown of each event's personal fields (personal-data.ts PersonalView), by
 * event id; events without any are left out. With `reveal` (true: every event; a set: the ids of
 * the events the reader may reveal, the others withheld with reason `outside_scope`), live keys
 * are opened — from the database, never a cache, so a destroyed key opens nothing anywhere — and
 * the fields revealed; otherwise their names only. `subjects` lists whose data was revealed, for
 * the read's own audit event.
 */
export async function personalViews(db: Kysely<Database>, masterKey: Buffer, events: readonly Pick<StoredAuditEvent, 'id' | 'details'>[], reveal: boolean | ReadonlySet<string>): Promise<{ views: Map<string, PersonalView>; subjects: Set<string> }> {
  const views = new Map<string, PersonalView>();
  const subjects = new Set<string>();
  const sealed = events.map((event) => ({ event, sealed: sealedFieldsOf(event) })).filter((e) => e.sealed !== undefined);
  if (sealed.length === 0) return { views, subjects };
  const rows = new Map<string, KeyRow>();
  const kids = [...new Set(sealed.map((e) => e.sealed!.kid))];
  for (let i = 0; i < kids.length; i += 500) {
    const found = await db.selectFrom('audit_subject_keys').select(['kid', 'subject', 'generation', 'sealed_key', 'master_key_id', 'erased_at']).where('kid', 'in', kids.slice(i, i + 500)).execute();
    for (const row of found) rows.set(row.kid, row);
  }
  const opened = new Map<string, Buffer>();
  for (const { event, sealed: fields } of sealed) {
    const row = rows.get(fields!.kid);
    const names = [...fields!.fields];
    if (row && (row.erased_at !== null || row.sealed_key === null)) {
      views.set(event.id, { status: 'erased', fields: names, erased_at: Number(row.erased_at ?? 0) });
      continue;
    }
    if (reveal !== true && reveal !== false && !reveal.has(event.id)) {
      views.set(event.id, { status: 'withheld', fields: names, reason: 'outside_scope' });
      continue;
    }
    if (!reveal || !row) {
      views.set(event.id, { status: 'withheld', fields: names });
      continue;
    }
    let key = opened.get(row.kid);
    if (!key) opened.set(row.kid, (key = openKeyRow(masterKey, row)));
    try {
      views.set(event.id, { status: 'revealed', subject: row.subject, fields: openPersonalFields(event, key) });
      subjects.add(row.subject);
    } catch (error) {
      if (!(error instanceof PersonalDataError)) throw error;
      views.set(event.id, { status: 'withheld', fields: names });
    }
  }
  return { views, subjects };
}

/**
 * The events with their personal fields put back where a live key opens them (erased ones stay
 * as stored). Unaudited: for the CLI's own maintenance and for tests — readers go through the
 * audit API, which checks the role and records the read (src/endpoints/audit).
 */
export async function decryptEventsUnaudited<E extends Pick<StoredAuditEvent, 'id' | 'details'>>(db: Kysely<Database>, masterKey: Buffer, events: readonly E[]): Promise<E[]> {
  const { views } = await personalViews(db, masterKey, events, true);
  return events.map((event) => withPersonalFields(event, views.get(event.id)));
}
