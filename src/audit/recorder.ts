import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Flight } from '../storage/flight.ts';
import { MicroBatcher } from '../storage/micro-batcher.ts';
import { runStatements, type GroupCommit, type StatementOperation } from '../storage/group-commit.ts';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { isPostgres, writersLockText } from './dialect.ts';
import { preparedBatchRows, preparedOnPostgres } from '../storage/prepared.ts';
import { eventLeafHash, serializeStoredEvent, validateEvent } from './event-format.ts';
import type { AuditEvent, AuditLog, Recorded, StoredAuditEvent } from './events.ts';
import { sealPersonalFields, type SubjectKey } from './personal-data.ts';
import type { SubjectKeys } from './subject-keys.ts';
import { Counter } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';
import { inAuditSpan, tracingOn } from '../telemetry/spans.ts';
import { uuidV7 } from '../uuid-v7.ts';

type EventRow = Omit<Database['audit_events'], 'seq'>;

interface Pending {
  row: EventRow;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface RecorderOptions {
  clock: Clock;
  /** This node's id, recorded in every event. */
  node: string;
  /** Most events written in one transaction (default 2000). */
  maxBatch?: number;
  /**
   * When given, each batch joins this shared group-commit transaction (storage/group-commit.ts)
   * instead of opening its own, so a burst pays one commit for its audit events and other writes.
   */
  writer?: GroupCommit;
  /**
   * When given, the personal fields of each event (personal-data.ts) are encrypted under its data
   * subject's key before it is hashed (docs/privacy.md). The server always gives it; without it
   * (unit tests of the log itself) events are stored as recorded.
   */
  personalData?: SubjectKeys;
}

// Rows per INSERT statement: 9 parameters each stays far below SQLite's 32766-variable limit.
const rowsPerStatement = 500;

/**
 * The audit log's writer (DESIGN §5, §9): group commit. `record` validates and hashes the event at
 * once, queues it, and resolves after the transaction that holds it has committed. Events queued
 * in the same event-loop turn, or while the previous transaction commits, share one transaction,
 * so durability costs one commit per batch, not per event.
 */
export class AuditRecorder implements AuditLog {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #node: string;
  readonly #postgres: boolean;
  readonly #writer: GroupCommit | undefined;
  readonly #batcher: MicroBatcher<Pending>;
  readonly #personal: SubjectKeys | undefined;
  /** Events waiting for their subject's key before they join a batch: `close` waits for them. */
  readonly #resolving = new Set<Promise<void>>();
  #closed = false;
  readonly #listeners = new Set<(count: number) => void>();

  constructor(db: Kysely<Database>, options: RecorderOptions) {
    this.#db = db;
    this.#clock = options.clock;
    this.#node = options.node;
    this.#batcher = new MicroBatcher((batch) => this.#writeBatch(batch), options.maxBatch ?? 2000);
    this.#postgres = isPostgres(db);
    this.#writer = options.writer;
    this.#personal = options.personalData;
    // Every committed event, whichever path wrote it (docs/operations.md "Metrics").
    this.#listeners.add((count) => appendedEvents.inc(count));
  }

  /**
   * Records an event; resolves once it is committed. Rejects with AuditGuardError when the event
   * carries a secret or raw token, TypeError when it is not a catalogued, JSON-representable event,
   * or the database error when the write failed (then nothing of its batch was written).
   * Traced, in a traced request, as `clearance.audit_append` (src/telemetry/spans.ts).
   */
  record(event: AuditEvent): Promise<void> {
    return tracingOn ? inAuditSpan([event], () => this.#record(event)) : this.#record(event);
  }

  #record(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the audit log is closed'));
    let row: EventRow;
    try {
      const subject = this.#check(event);
      const key = subject === undefined ? undefined : this.#personal!.peek(subject);
      // A subject not in this node's cache: its key is read (or created and committed) first.
      if (subject !== undefined && key === undefined) return this.#recordWithNewKey(event, subject);
      row = this.#prepare(event, key);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => this.#batcher.add({ row, resolve, reject }));
  }

  #recordWithNewKey(event: AuditEvent, subject: string): Promise<void> {
    const recorded = (async () => {
      const { keys } = await this.#personal!.resolve([subject]);
      const row = this.#prepare(event, keys.get(subject));
      await new Promise<void>((resolve, reject) => this.#batcher.add({ row, resolve, reject }));
    })();
    const tracked = recorded.catch(() => undefined).finally(() => this.#resolving.delete(tracked));
    this.#resolving.add(tracked);
    return recorded;
  }

  /**
   * Runs `work` and inserts the events it returns in one transaction of its own (AuditLog). Not
   * the group commit: the work may wait for row locks, which would hold up the whole batch, and
   * a failing work would make the batch roll back and retry. The events are validated and hashed
   * as `record` does; a refused one rolls the work back.
   */
  recordWith<T>(work: (trx: Transaction<Database>) => Promise<Recorded<T>>): Promise<T> {
    return tracingOn ? inAuditSpan(undefined, () => this.#recordWith(work)) : this.#recordWith(work);
  }

  async #recordWith<T>(work: (trx: Transaction<Database>) => Promise<Recorded<T>>): Promise<T> {
    if (this.#closed) throw new Error('the audit log is closed');
    let count = 0;
    let remember: (() => void) | undefined;
    const value = await this.#db.transaction().execute(async (trx) => {
      const done = await work(trx);
      const checked = done.events.map((event) => ({ event, subject: this.#check(event) }));
      // Keys of subjects not cached are read, or created, in this transaction: durable with its events.
      const subjects = checked.flatMap((c) => (c.subject === undefined ? [] : [c.subject]));
      const resolved = subjects.length > 0 ? await this.#personal!.resolve(subjects, trx) : undefined;
      remember = resolved?.remember;
      const rows = checked.map((c) => this.#prepare(c.event, c.subject === undefined ? undefined : resolved!.keys.get(c.subject)));
      // Last in the transaction: PostgreSQL's writers' lock is taken only after the work's locks.
      if (rows.length > 0) await runStatements(trx, this.#insertion(rows));
      count = rows.length;
      return done.value;
    });
    remember?.();
    if (count > 0) for (const listener of this.#listeners) listener(count);
    return value;
  }

  /**
   * Commits `flight` with `events` inserted after its statements (AuditLog): one transaction,
   * written at once. The events are validated and hashed before anything is sent.
   */
  commit(flight: Flight, events: AuditEvent[]): Promise<void> {
    return tracingOn ? inAuditSpan(events, () => this.#commit(flight, events)) : this.#commit(flight, events);
  }

  async #commit(flight: Flight, events: AuditEvent[]): Promise<void> {
    if (this.#closed) throw new Error('the audit log is closed');
    const checked = events.map((event) => ({ event, subject: this.#check(event) }));
    const subjects = checked.flatMap((c) => (c.subject === undefined ? [] : [c.subject]));
    const personal = subjects.length > 0 ? await this.#personal!.cached(subjects) : undefined;
    try {
      await this.#commitUnder(flight, checked, personal);
    } finally {
      // Another event of these subjects on this node waited for this bet instead of betting against it.
      personal?.settled();
    }
  }

  async #commitUnder(flight: Flight, checked: { event: AuditEvent; subject: string | undefined }[], personal: Awaited<ReturnType<SubjectKeys['cached']>> | undefined): Promise<void> {
    const keys = new Map(personal?.keys);
    // A subject this node holds no key for gets its first key in this transaction, on the bet that
    // it has none yet (its first event: a first sign-in) — durable with its events, no round trip of
    // its own. A bet that lost (a key made on another node, before a restart, or erased) changes no
    // row: the transaction is refused, writes nothing, and is sent again under the subject's key,
    // which the same transaction read just before the insert.
    const made = new Map<string, SubjectKey>();
    const bets: { subject: string; latest: Promise<unknown>; insert: Promise<unknown> }[] = [];
    for (const subject of personal?.missing ?? []) {
      const first = this.#personal!.firstKey(subject);
      made.set(subject, first.key);
      keys.set(subject, first.key);
      const latest = flight.run(this.#personal!.latestKey(subject));
      bets.push({ subject, latest, insert: flight.run(first.insert, { rows: 1, otherwise: subjectKeyTaken }) });
    }
    const prepare = () => checked.map((c) => this.#prepare(c.event, c.subject === undefined ? undefined : keys.get(c.subject)));
    const rows = prepare();
    const inserts: Promise<unknown>[] = [];
    if (rows.length > 0) {
      // Last in the transaction, as in recordWith: the writers' lock after the flight's own locks.
      if (this.#postgres) void flight.run(writersLock);
      for (const [text, parameters] of insertStatements(rows, this.#postgres)) inserts.push(flight.run(CompiledQuery.raw(text, parameters)));
    }
    let found: Map<string, SubjectKey> | undefined;
    await flight.commit({
      reason: subjectKeyTaken,
      amend: async (replace, firstAnswer) => {
        found = new Map();
        const unread: string[] = [];
        for (const bet of bets) {
          replace(bet.insert, undefined);
          const live = this.#personal!.latestFrom(firstAnswer(bet.latest)?.rows ?? []);
          if (live) found.set(bet.subject, live);
          else unread.push(bet.subject); // made since the read, or only erased ones: read (or made) now
        }
        if (unread.length > 0) (await this.#personal!.resolve(unread, undefined, { haveKeys: true })).keys.forEach((key, subject) => keys.set(subject, key));
        found.forEach((key, subject) => keys.set(subject, key));
        // Each key the events are now sealed under was read before this sending: it must still be
        // live when they are written (an erasure meanwhile refuses the transaction; never retried).
        for (const bet of bets) replace(bet.latest, this.#personal!.keptLive(keys.get(bet.subject)!.kid), { rows: 1, otherwise: subjectKeyErased });
        const again = [...insertStatements(prepare(), this.#postgres)];
        inserts.forEach((insert, i) => replace(insert, CompiledQuery.raw(again[i]![0], again[i]![1])));
      },
    });
    // The keys this transaction wrote, or read when its bet lost (`resolve` cached its own).
    personal?.remember(found ?? made);
    if (rows.length > 0) for (const listener of this.#listeners) listener(rows.length);
  }

  /** Resolves when every event recorded so far has been written (or has failed). */
  flush(): Promise<void> {
    return this.#batcher.flush();
  }

  /** Writes what is queued and refuses further events. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#resolving);
    await this.flush();
  }

  /** Calls `listener(count)` after each committed batch (the sealer uses it to seal promptly). */
  onCommitted(listener: (count: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Validates an event (the guard: no secret, a catalogued type) and names its data subject when it
   * has personal fields and the log encrypts them: for an event without, one scan of its details' names.
   */
  #check(event: AuditEvent): string | undefined {
    validateEvent(event);
    return this.#personal?.subjectOf(event);
  }

  /** The stored row of a checked event; with `key`, its personal fields sealed under it first (bound to its id). */
  #prepare(event: AuditEvent, key?: SubjectKey): EventRow {
    const time = this.#clock.now();
    const recorded: StoredAuditEvent = { ...event, v: 1, id: uuidV7(time), time, node: this.#node };
    // The Merkle leaf covers the ciphertext: verification never needs the key (docs/privacy.md).
    const stored = key ? sealPersonalFields(recorded, key) : recorded;
    const text = serializeStoredEvent(stored);
    return {
      id: stored.id,
      type: stored.type,
      time,
      txn: stored.txn ?? null,
      subject: stored.subject ?? null,
      client: stored.client ?? null,
      decision: decisionColumn(stored),
      event: text,
      // RFC 9162 §2.1.1: the leaf hash covers the canonical JSON bytes, prefixed by 0x00.
      leaf_hash: eventLeafHash(text),
    };
  }

  /** Writes one batch in one transaction (the group commit's, when there is one) and settles it. */
  async #writeBatch(batch: Pending[]): Promise<void> {
    try {
      await this.#write(batch.map((p) => p.row));
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    for (const p of batch) p.resolve();
    for (const listener of this.#listeners) listener(batch.length);
  }

  async #write(rows: EventRow[]): Promise<void> {
    // Statements alone: on PostgreSQL the writer sends them in one flight with the batch's others.
    const insertion = this.#insertion(rows);
    await (this.#writer ? this.#writer.run(insertion) : this.#db.transaction().execute((trx) => runStatements(trx, insertion)));
  }

  /** The statements inserting `rows`, in one transaction. */
  #insertion(rows: EventRow[]): StatementOperation<void> {
    return {
      statements: () => {
        const statements: CompiledQuery[] = [];
        if (this.#postgres) statements.push(writersLock);
        for (const [text, parameters] of insertStatements(rows, this.#postgres)) statements.push(CompiledQuery.raw(text, parameters));
        return statements;
      },
      result: () => undefined,
    };
  }
}

const appendedEvents = new Counter({
  name: 'clearance_audit_events_appended_total',
  help: 'Audit events committed to the log (each durable before the response that depends on it).',
  registers: [metricsRegistry],
});

/** The INSERT statements of `rows`: prepared multi-row INSERTs (Kysely's builder costs more per row than SQLite does). */
function* insertStatements(rows: EventRow[], postgres: boolean): Generator<[string, unknown[]]> {
  for (let i = 0; i < rows.length; i += rowsPerStatement) {
    const chunk = rows.slice(i, i + rowsPerStatement);
    const parameters: unknown[] = [];
    for (const row of chunk) for (const column of columns) parameters.push(row[column]);
    yield [insertText(chunk.length, postgres), parameters];
  }
}

/** Why a flight's transaction is refused when a subject's first key was made elsewhere first. */
const subjectKeyTaken = 'audit_subject_key_taken';
/** Why the second sending is refused when a key it read was erased before it was written. */
const subjectKeyErased = 'audit_subject_key_erased';

const columns = ['id', 'type', 'time', 'txn', 'subject', 'client', 'decision', 'event', 'leaf_hash'] as const;
const insertTexts = new Map<string, string>();

/** PostgreSQL: the sealer's barrier waits for every transaction holding this (sealer.ts); prepared (prepared.ts). */
const writersLock = CompiledQuery.raw(preparedOnPostgres(`select pg_advisory_xact_lock_shared(${writersLockText})`));

function insertText(rows: number, postgres: boolean): string {
  const key = `${postgres}:${rows}`;
  let text = insertTexts.get(key);
  if (!text) {
    let n = 0;
    const tuples = Array.from({ length: rows }, () => `(${columns.map(() => (postgres ? `$${++n}` : '?')).join(',')})`);
    text = `insert into audit_events (${columns.join(',')}) values ${tuples.join(',')}`;
    // The sizes a busy server's batches mostly have: parsed once per connection (prepared.ts).
    if (postgres && rows <= preparedBatchRows) preparedOnPostgres(text);
    insertTexts.set(key, text);
  }
  return text;
}

/** The indexed decision column: 'allow', 'deny' or null. */
export function decisionColumn(event: StoredAuditEvent): string | null {
  return event.decision ? (event.decision.allow ? 'allow' : 'deny') : null;
}
