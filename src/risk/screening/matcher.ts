import type { ScreeningEntry, ScreeningList } from './list.ts';
import { datesAgree, nameTokens } from './normalize.ts';

/** What is screened: a person (their name and date of birth) or a legal entity (name and LEI). */
export type ScreeningSubject = { type: 'person'; name?: string; dateOfBirth?: string } | { type: 'entity'; name?: string; lei?: string };

/** What made an entry match: the name or an alias, the LEI, the date of birth agreeing. */
export type MatchedOn = 'name' | 'alias' | 'lei' | 'date_of_birth';

export interface ScreeningHit {
  entry: ScreeningEntry;
  matchedOn: MatchedOn[];
}

interface IndexedName {
  entry: ScreeningEntry;
  tokens: string[];
  alias: boolean;
}

/**
 * The list as an in-memory index (docs/risk.md "Sanctions and PEP screening"), so screening a
 * person at each sign-in costs no round trip and no scan: every name and alias of every entry by
 * each of its tokens (./normalize.ts), and every LEI.
 *
 * Matching rules:
 * - a person is screened against `person` entries, a legal entity against `entity` entries;
 * - LEI: an entity whose LEI is an entry's LEI matches, whatever the names;
 * - names: the token sets are equal, whatever their order; for people, a PARTIAL name matches
 *   too when one token set holds the other and the smaller has at least two tokens (`John Smith`
 *   on the list matches `John Michael Smith`, and the other way round), so a middle name more or
 *   less does not hide anyone; a single token (`Smith`) matches only a single-token name exactly;
 *   an initial is a token of its own (`J. Smith` does not match `John Smith`); entities match on
 *   equal token sets only (legal forms left out), their LEI doing the rest;
 * - a name match with a CONFLICTING date of birth (both known, different at the precision of the
 *   less precise) is not a hit, nor an entity name match with a conflicting LEI (both known,
 *   different): these are someone else of the same name. A date or LEI that either side lacks
 *   conflicts with nothing: the name match is a hit (a human decides);
 * - `matchedOn` says what matched: `name` or `alias`, `lei`, and `date_of_birth` when both dates
 *   are known and agree.
 */
export class ScreeningIndex {
  readonly digest: string;
  readonly size: number;
  readonly #byToken = new Map<string, IndexedName[]>();
  readonly #byLei = new Map<string, ScreeningEntry[]>();
  readonly #singles = new Map<string, IndexedName[]>();

  constructor(list: ScreeningList) {
    this.digest = list.digest;
    this.size = list.entries.length;
    for (const entry of list.entries) {
      if (entry.lei) this.#push(this.#byLei, entry.lei, entry);
      const kind = entry.type === 'person' ? 'person' : 'entity';
      const names = [{ text: entry.name, alias: false }, ...entry.aliases.map((text) => ({ text, alias: true }))];
      for (const { text, alias } of names) {
        const tokens = nameTokens(text, kind);
        if (tokens.length === 0) continue;
        const indexed: IndexedName = { entry, tokens, alias };
        if (tokens.length === 1) this.#push(this.#singles, tokens[0]!, indexed);
        else for (const token of tokens) this.#push(this.#byToken, token, indexed);
      }
    }
  }

  /** Every entry the subject matches, once each, with what matched. */
  match(subject: ScreeningSubject): ScreeningHit[] {
    const wanted = subject.type === 'person' ? 'person' : 'entity';
    const hits = new Map<string, ScreeningHit>();
    const add = (entry: ScreeningEntry, on: MatchedOn) => {
      const hit = hits.get(entry.id) ?? { entry, matchedOn: [] };
      if (!hit.matchedOn.includes(on)) hit.matchedOn.push(on);
      hits.set(entry.id, hit);
    };
    if (subject.type === 'entity' && subject.lei) {
      for (const entry of this.#byLei.get(subject.lei.toUpperCase()) ?? []) if (entry.type === 'entity') add(entry, 'lei');
    }
    if (subject.name) {
      for (const named of this.#nameMatches(nameTokens(subject.name, wanted), wanted === 'person')) {
        const { entry } = named;
        if (entry.type !== wanted) continue;
        if (subject.type === 'person') {
          if (!datesAgree(subject.dateOfBirth, entry.dateOfBirth)) continue;
          add(entry, named.alias ? 'alias' : 'name');
          if (subject.dateOfBirth !== undefined && entry.dateOfBirth !== undefined) add(entry, 'date_of_birth');
        } else {
          if (subject.lei && entry.lei && subject.lei.toUpperCase() !== entry.lei) continue;
          add(entry, named.alias ? 'alias' : 'name');
        }
      }
    }
    // Stable order for events and tests: what matched first, then by entry id.
    return [...hits.values()].map((h) => ({ ...h, matchedOn: order(h.matchedOn) })).sort((a, b) => (a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0));
  }

  /** The indexed names matching these tokens: equal sets, or (partial) one holding the other with two tokens or more. */
  #nameMatches(tokens: string[], partial: boolean): IndexedName[] {
    if (tokens.length === 0) return [];
    if (tokens.length === 1) return (this.#singles.get(tokens[0]!) ?? []).filter((n) => n.tokens.length === 1);
    const shared = new Map<IndexedName, number>();
    for (const token of tokens) for (const named of this.#byToken.get(token) ?? []) shared.set(named, (shared.get(named) ?? 0) + 1);
    const matches: IndexedName[] = [];
    for (const [named, count] of shared) {
      const equal = count === tokens.length && count === named.tokens.length;
      const contained = partial && (count === named.tokens.length || count === tokens.length);
      if (equal || contained) matches.push(named);
    }
    return matches;
  }

  #push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  }
}

const matchOrder: MatchedOn[] = ['lei', 'name', 'alias', 'date_of_birth'];

/**
 * Every entry any of the subjects matches (one counterparty screened by several names, or as a
 * legal entity and as a person), once each with what matched merged, in the index's order.
 */
export function matchAny(index: ScreeningIndex, subjects: readonly ScreeningSubject[]): ScreeningHit[] {
  const byId = new Map<string, ScreeningHit>();
  for (const hit of subjects.flatMap((subject) => index.match(subject))) {
    const known = byId.get(hit.entry.id);
    byId.set(hit.entry.id, known ? { entry: hit.entry, matchedOn: order([...known.matchedOn, ...hit.matchedOn]) } : hit);
  }
  return [...byId.values()].sort((a, b) => (a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0));
}

function order(on: MatchedOn[]): MatchedOn[] {
  return matchOrder.filter((m) => on.includes(m));
}
