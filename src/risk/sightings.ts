import { sql, type Kysely } from 'kysely';
import { withinSpan, type Clock } from '../clock.ts';
import type { Flight } from '../storage/flight.ts';
import { FixedQuery } from '../storage/fixed-query.ts';
import { MicroBatcher } from '../storage/micro-batcher.ts';
import type { Database } from '../storage/schema.ts';
import type { RiskPrincipal } from './engine.ts';
import { BoundedMap, OldestFirst } from '../jose/bounded-map.ts';

/** What the risk signals remember having seen for a principal (migration 0027_risk). */
export const sightingKinds = ['device', 'network', 'scope', 'audience', 'resource', 'actor', 'chain_depth', 'admin_network'] as const;
export type SightingKind = (typeof sightingKinds)[number];

/** How often a known sighting's `last_seen` is written again: a steady principal costs no write. */
export const refreshEveryMs = 3600_000;

/**
 * How long an absence read ahead (readAheadForUsername) stands in for a read: long enough for the
 * request that read it, too short to outlive it; and it answers once.
 */
export const readAheadAbsenceMs = 1000;

/** Sightings kept: one not seen for this long is forgotten (and is new again). */
export const sightingRetentionDays = 400;

/**
 * The sightings store: shared by every node through the database, with a bounded cache of what
 * this node has read or written, so a principal's known device, network or scope costs no round
 * trip on the hot path. Only sightings that exist are cached (something not yet seen is read again
 * until it is noted, so a sighting noted on another node is found). A cached entry is trusted for
 * `refreshEveryMs`; its `last_seen` may then be up to that much older than the database's, which
 * the signals' windows (days) absorb.
 */
export class SightingStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #maxCached: number;
  /** Key → when last seen and when this node last read or wrote it; least recently used first. */
  readonly #cache: BoundedMap<string, { lastSeen: number; firstSeen: number; checkedAt: number }>;
  /** Principal and kind pairs known to have some sighting (only known ones are kept). */
  readonly #known = new Set<string>();
  readonly #oldest = new OldestFirst(this.#known);
  /**
   * Reads and writes under way, by what they are about: concurrent requests that need the same
   * sighting (a burst of a new client's first tokens) share one statement instead of each sending
   * its own.
   */
  readonly #underWay = new Map<string, Promise<unknown>>();
  /**
   * Notes made in one event-loop turn are written by one statement: a sign-in notes its device
   * and its network together, one round trip instead of two.
   */
  readonly #notes = new MicroBatcher<PendingNote>((batch) => this.#writeNotes(batch), 200);
  /** Absences read ahead (a value never seen, a kind with no history), by key: when they were read (they answer for `readAheadAbsenceMs`). */
  readonly #absent = new Map<string, number>();

  constructor(db: Kysely<Database>, clock: Clock, options: { maxCached?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#maxCached = options.maxCached ?? 100_000;
    this.#cache = new BoundedMap(this.#maxCached);
  }

  /** When the principal was last seen with this value; undefined when never (or forgotten). */
  async lastSeen(principal: RiskPrincipal, kind: SightingKind, value: string): Promise<number | undefined> {
    return (await this.sighting(principal, kind, value))?.lastSeen;
  }

  /** The first and last time the principal was seen with this value. */
  async sighting(principal: RiskPrincipal, kind: SightingKind, value: string): Promise<{ firstSeen: number; lastSeen: number } | undefined> {
    const key = cacheKey(principal, kind, value);
    const now = this.#clock.now();
    const cached = this.#cache.get(key);
    if (cached && withinSpan(now, cached.checkedAt, refreshEveryMs)) {
      this.#touch(key, cached);
      return { firstSeen: cached.firstSeen, lastSeen: cached.lastSeen };
    }
    if (this.#takeAbsence(key, now)) return undefined;
    const row = await this.#once(`read ${key}`, () => sightingRead.first(this.#db, [principal.type, principal.id, kind, value]));
    if (!row) {
      this.#cache.delete(key);
      return undefined;
    }
    const entry = { firstSeen: Number(row.first_seen), lastSeen: Number(row.last_seen), checkedAt: now };
    this.#touch(key, entry);
    return { firstSeen: entry.firstSeen, lastSeen: entry.lastSeen };
  }

  /**
   * Records that the principal was seen with this value now: inserted when new, `last_seen` moved
   * when the cached one is older than `refreshEveryMs`, nothing written otherwise.
   */
  async note(principal: RiskPrincipal, kind: SightingKind, value: string): Promise<void> {
    const key = cacheKey(principal, kind, value);
    const now = this.#clock.now();
    if (!this.#noteDue(key, now)) return;
    const row = noteRow(principal, kind, value, now);
    await this.#once(`note ${key}`, () => new Promise<void>((resolve, reject) => this.#notes.add({ row, resolve, reject })));
    this.#noted(row);
  }

  /**
   * Notes written in an action's own transaction instead of after it (a sign-in's flight): `note`
   * collects them, `land()` adds them to `flight` as one upsert — call it before the flight is
   * sent — and resolves once the flight has landed. The cache learns them only then, so nothing is
   * remembered of an action whose transaction did not commit.
   */
  notesFor(flight: Flight): FlightNotes {
    const rows = new Map<string, Database['risk_sightings']>();
    return {
      note: async (principal, kind, value) => {
        const key = cacheKey(principal, kind, value);
        const now = this.#clock.now();
        if (this.#noteDue(key, now)) rows.set(key, noteRow(principal, kind, value, now));
      },
      land: () => {
        if (rows.size === 0) return Promise.resolve();
        const written = [...rows.values()];
        const landed = flight.run(this.#upsert(written)).then(() => written.forEach((row) => this.#noted(row)));
        // The flight's own failure is its caller's to handle; this promise must not go unhandled.
        landed.catch(() => undefined);
        return landed;
      },
    };
  }

  /** Whether a note of this key writes anything: a sighting not cached, or cached older than `refreshEveryMs`. */
  #noteDue(key: string, now: number): boolean {
    const cached = this.#cache.get(key);
    return !(cached && withinSpan(now, cached.lastSeen, refreshEveryMs) && withinSpan(now, cached.checkedAt, refreshEveryMs));
  }

  /** What the cache learns of a note once written. */
  #noted(row: Database['risk_sightings']): void {
    const principal = { type: row.principal_type, id: row.principal_id } as RiskPrincipal;
    const key = cacheKey(principal, row.kind as SightingKind, row.value);
    const now = Number(row.last_seen);
    this.#touch(key, { firstSeen: this.#cache.get(key)?.firstSeen ?? now, lastSeen: now, checkedAt: now });
    this.#remember(JSON.stringify([principal.type, principal.id, row.kind]));
    this.#absent.delete(key);
    this.#absent.delete(JSON.stringify([principal.type, principal.id, row.kind]));
  }

  /**
   * Whether anything of this kind was ever seen for the principal: whether it has a history to be
   * new against (a client's first token has no "new" scope, only a first one). Cached once true,
   * so a known principal costs no round trip.
   */
  async anySeen(principal: RiskPrincipal, kind: SightingKind): Promise<boolean> {
    const key = JSON.stringify([principal.type, principal.id, kind]);
    if (this.#known.has(key)) return true;
    if (this.#takeAbsence(key, this.#clock.now())) return false;
    const row = await this.#once(`any ${key}`, () => anySightingRead.first(this.#db, [principal.type, principal.id, kind]));
    if (row) this.#remember(key);
    return row !== undefined;
  }

  /**
   * Reads ahead, as one statement in `flight`, what the sign-in of the person named `username`
   * will ask (src/identity/login-risk.ts): each of `values` (when last seen) and whether each of
   * `histories` has any sighting. The person's id is not known yet — the same flight reads their
   * account — so the statement finds it by username. Once the flight lands, what exists goes into
   * the cache as a read would put it, and each absence answers the next read of it once, within
   * `readAheadAbsenceMs`: a sign-in asks the same questions a few milliseconds later, and saves
   * their round trips (issue 13: a first sign-in's database round trips). An unknown username
   * reads nothing.
   */
  readAheadForUsername(flight: Flight, username: string, values: { kind: SightingKind; value: string }[], histories: SightingKind[]): void {
    const sighting = (column: 'first_seen' | 'last_seen', kind: string, value: string) =>
      sql`(select s.${sql.ref(column)} from risk_sightings s where s.principal_type = 'User' and s.principal_id = u.id and s.kind = ${kind} and s.value = ${value})`;
    const any = (kind: string) => sql`(select count(*) from (select 1 from risk_sightings s where s.principal_type = 'User' and s.principal_id = u.id and s.kind = ${kind} limit 1) as one)`;
    const columns = [
      sql`u.id as id`,
      ...values.flatMap(({ kind, value }, i) => [sql`${sighting('first_seen', kind, value)} as ${sql.ref(`f${i}`)}`, sql`${sighting('last_seen', kind, value)} as ${sql.ref(`l${i}`)}`]),
      ...histories.map((kind, i) => sql`${any(kind)} as ${sql.ref(`a${i}`)}`),
    ];
    const read = flight.run(sql<Record<string, unknown>>`select ${sql.join(columns)} from users u where u.username = ${username}`.compile(this.#db));
    read.then(
      ({ rows }) => {
        const row = rows[0];
        if (!row) return;
        const principal: RiskPrincipal = { type: 'User', id: String(row.id) };
        const now = this.#clock.now();
        values.forEach(({ kind, value }, i) => {
          const key = cacheKey(principal, kind, value);
          if (row[`l${i}`] == null) this.#absent.set(key, now);
          else this.#touch(key, { firstSeen: Number(row[`f${i}`]), lastSeen: Number(row[`l${i}`]), checkedAt: now });
        });
        histories.forEach((kind, i) => {
          const key = JSON.stringify([principal.type, principal.id, kind]);
          if (Number(row[`a${i}`]) > 0) this.#remember(key);
          else this.#absent.set(key, now);
        });
        for (const [key, readAt] of this.#absent) if (!withinSpan(now, readAt, readAheadAbsenceMs)) this.#absent.delete(key);
      },
      () => undefined, // the read that would have been made is made then
    );
  }

  /** One upsert for a batch of notes (distinct keys: `#once` lets one note per key be under way). */
  async #writeNotes(batch: PendingNote[]): Promise<void> {
    try {
      await this.#upsert(batch.map((n) => n.row)).execute();
    } catch (error) {
      for (const note of batch) note.reject(error);
      return;
    }
    for (const note of batch) note.resolve();
  }

  #upsert(rows: Database['risk_sightings'][]) {
    return this.#db
      .insertInto('risk_sightings')
      .values(rows)
      .onConflict((oc) => oc.columns(['principal_type', 'principal_id', 'kind', 'value']).doUpdateSet((eb) => ({ last_seen: eb.ref('excluded.last_seen') })));
  }

  /** Whether an absence read ahead answers this read (once): within `readAheadAbsenceMs` of the read, never before it. */
  #takeAbsence(key: string, now: number): boolean {
    const readAt = this.#absent.get(key);
    if (readAt === undefined) return false;
    this.#absent.delete(key);
    return withinSpan(now, readAt, readAheadAbsenceMs);
  }

  /** Every value of a kind seen for the principal since `since` (epoch ms), read from the database. */
  async values(principal: RiskPrincipal, kind: SightingKind, since = 0): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('risk_sightings')
      .select('value')
      .where('principal_type', '=', principal.type)
      .where('principal_id', '=', principal.id)
      .where('kind', '=', kind)
      .where('last_seen', '>=', since)
      .execute();
    return rows.map((r) => r.value);
  }

  /** Forgets sightings last seen before `before` (epoch ms); returns how many. */
  async prune(before: number): Promise<number> {
    const result = await this.#db.deleteFrom('risk_sightings').where('last_seen', '<', before).executeTakeFirst();
    this.#cache.clear();
    this.#known.clear();
    this.#absent.clear();
    return Number(result.numDeletedRows);
  }

  /** `work`'s promise, shared with whoever asks for the same `what` while it is under way. */
  #once<T>(what: string, work: () => Promise<T>): Promise<T> {
    const underWay = this.#underWay.get(what) as Promise<T> | undefined;
    if (underWay) return underWay;
    const started = work().finally(() => this.#underWay.delete(what));
    this.#underWay.set(what, started);
    return started;
  }

  #remember(known: string): void {
    this.#known.add(known);
    this.#oldest.trim(this.#maxCached);
  }

  #touch(key: string, entry: { firstSeen: number; lastSeen: number; checkedAt: number }): void {
    this.#cache.delete(key);
    this.#cache.set(key, entry);
  }
}

/**
 * Where a signal's observations go (src/risk/engine.ts `observeRisk`): the store itself (written
 * after the action, batched per turn) or an action's own transaction (`SightingStore.notesFor`).
 */
export interface SightingNotes {
  note(principal: RiskPrincipal, kind: SightingKind, value: string): Promise<void>;
}

/** Notes collected for a flight: `land()` adds them to it (see `SightingStore.notesFor`). */
export interface FlightNotes extends SightingNotes {
  land(): Promise<void>;
}

function noteRow(principal: RiskPrincipal, kind: SightingKind, value: string, now: number): Database['risk_sightings'] {
  return { principal_type: principal.type, principal_id: principal.id, kind, value, first_seen: now, last_seen: now };
}

interface PendingNote {
  row: Database['risk_sightings'];
  resolve(): void;
  reject(error: unknown): void;
}

function cacheKey(principal: RiskPrincipal, kind: SightingKind, value: string): string {
  return JSON.stringify([principal.type, principal.id, kind, value]);
}

// Texts, not built queries: an agent decided at the AuthZEN API asks both on every decision.
const sightingRead = new FixedQuery<{ first_seen: number | string; last_seen: number | string }>(
  'select first_seen, last_seen from risk_sightings where principal_type = ? and principal_id = ? and kind = ? and value = ?',
);
// `limit 1`, not a bound `limit ?`: on SQLite the bound limit made this read 37 µs against 5 in a
// busy server, 7.4-12.4 against 3.6-5.5 in isolation (docs/performance.md).
const anySightingRead = new FixedQuery<{ value: string }>('select value from risk_sightings where principal_type = ? and principal_id = ? and kind = ? limit 1');
