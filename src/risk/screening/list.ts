import { createHash } from 'node:crypto';
import { isValidLei } from '../../entities/lei.ts';
import { dateOfBirthPattern } from './normalize.ts';

/**
 * The operator's sanctions/PEP screening list (env CLEARANCE_SCREENING_LIST; docs/risk.md
 * "Sanctions and PEP screening"; examples/screening/). Two formats, told apart by the file's
 * first non-blank character (`{` or `[`: JSON; anything else: CSV):
 *
 * - CSV (RFC 4180: comma-separated, `"`-quoted fields with `""` for a quote, UTF-8), a header row
 *   naming the columns, in any order: `id,type,name,aliases,lei,date_of_birth,list,programme`
 *   (`aliases` separated by `;`; empty cells are absent values);
 * - JSON: `{ "entries": [ { "id", "type", "name", "aliases": [...], "lei", "date_of_birth",
 *   "list", "programme" } ] }` (or the array alone).
 *
 * An entry: `id` (unique, 1–128 characters), `type` (`person` or `entity`), `name`, optional
 * `aliases`, `lei` (ISO 17442, check digits verified; entities), `date_of_birth` (`YYYY`,
 * `YYYY-MM` or `YYYY-MM-DD`; people), `list` (which list: `sanctions`, `pep`, ... lowercase) and
 * optional `programme` (e.g. the sanctions regime). A file with any invalid entry is refused whole
 * (ScreeningListError names the first problems): a list is never half-loaded.
 */
export interface ScreeningEntry {
  id: string;
  type: 'person' | 'entity';
  name: string;
  aliases: string[];
  lei?: string;
  dateOfBirth?: string;
  list: string;
  programme?: string;
  /** SHA-256 of the entry's content: a cleared match holds until the entry changes. */
  digest: string;
}

export interface ScreeningList {
  entries: ScreeningEntry[];
  /** SHA-256 (hex) of the file's bytes: the list version recorded with every match. */
  digest: string;
}

export class ScreeningListError extends Error {
  override name = 'ScreeningListError';
}

const columns = ['id', 'type', 'name', 'aliases', 'lei', 'date_of_birth', 'list', 'programme'] as const;
const listPattern = /^[a-z][a-z0-9_-]{0,31}$/;
const maxEntries = 1_000_000;

/** Parses a list file's bytes; throws ScreeningListError naming what is wrong (never the whole file). */
export function parseScreeningList(bytes: Buffer): ScreeningList {
  const digest = createHash('sha256').update(bytes).digest('hex');
  const text = bytes.toString('utf8').replace(/^\uFEFF/, '');
  const first = text.trimStart()[0];
  const raw = first === '{' || first === '[' ? jsonEntries(text) : csvEntries(text);
  if (raw.length > maxEntries) throw new ScreeningListError(`has more than ${maxEntries} entries`);
  const problems: string[] = [];
  const seen = new Set<string>();
  const entries: ScreeningEntry[] = [];
  raw.forEach(({ at, fields }) => {
    const entry = readEntry(fields, (message) => problems.push(`${at}: ${message}`));
    if (!entry) return;
    if (seen.has(entry.id)) problems.push(`${at}: id "${entry.id}" is listed twice`);
    seen.add(entry.id);
    entries.push(entry);
  });
  if (problems.length > 0) throw new ScreeningListError(`${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}`);
  return { entries, digest };
}

type RawEntry = { at: string; fields: Record<string, unknown> };

function jsonEntries(text: string): RawEntry[] {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new ScreeningListError(`is not valid JSON (${(error as Error).message})`);
  }
  const list = Array.isArray(document) ? document : (document as { entries?: unknown } | null)?.entries;
  if (!Array.isArray(list)) throw new ScreeningListError('must be a JSON array of entries, or an object with an "entries" array');
  return list.map((fields, i) => ({ at: `entries[${i}]`, fields: typeof fields === 'object' && fields !== null && !Array.isArray(fields) ? (fields as Record<string, unknown>) : { invalid: true } }));
}

function csvEntries(text: string): RawEntry[] {
  const rows = parseCsv(text);
  const header = rows.shift();
  if (!header) throw new ScreeningListError('is empty');
  const names = header.map((h) => h.trim().toLowerCase());
  const unknown = names.filter((n) => !(columns as readonly string[]).includes(n));
  if (unknown.length > 0) throw new ScreeningListError(`has unknown column(s) ${unknown.join(', ')} (known: ${columns.join(', ')})`);
  for (const required of ['id', 'type', 'name', 'list']) if (!names.includes(required)) throw new ScreeningListError(`has no "${required}" column`);
  return rows
    .map((cells, i) => ({ cells, line: i + 2 }))
    .filter(({ cells }) => cells.some((c) => c.trim() !== ''))
    .map(({ cells, line }) => {
      const fields: Record<string, unknown> = {};
      names.forEach((name, i) => {
        const cell = (cells[i] ?? '').trim();
        if (cell === '') return;
        fields[name] = name === 'aliases' ? cell.split(';').map((a) => a.trim()).filter(Boolean) : cell;
      });
      if (cells.length > names.length) fields.invalid = true;
      return { at: `line ${line}`, fields };
    });
}

/** RFC 4180 records: fields separated by commas, `"`-quoted with `""` inside, CRLF or LF line ends. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (quoted) throw new ScreeningListError('has an unterminated quoted field');
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function readEntry(o: Record<string, unknown>, fail: (message: string) => void): ScreeningEntry | undefined {
  let problems = 0;
  const problem = (message: string): undefined => {
    problems++;
    fail(message);
    return undefined;
  };
  if (o.invalid) return problem("is not an entry (an object, or a row with at most the header's columns)");
  const unknown = Object.keys(o).filter((k) => !(columns as readonly string[]).includes(k));
  if (unknown.length > 0) problem(`unknown member(s) ${unknown.join(', ')}`);
  const text = (name: string, max: number, required: boolean): string | undefined => {
    const value = o[name];
    if (value === undefined || value === null || value === '') return required ? problem(`${name} is required`) : undefined;
    if (typeof value !== 'string' || value.length > max || /\p{Cc}/u.test(value)) return problem(`${name} must be text of at most ${max} characters`);
    return value.trim();
  };
  const check = (condition: boolean, message: string) => {
    if (!condition) problem(message);
  };
  const id = text('id', 128, true);
  const type = text('type', 16, true);
  check(type === undefined || type === 'person' || type === 'entity', 'type must be person or entity');
  const name = text('name', 300, true);
  const aliasesRaw = o.aliases ?? [];
  const aliases = Array.isArray(aliasesRaw) && aliasesRaw.every((a) => typeof a === 'string' && a.trim().length > 0 && a.length <= 300 && !/\p{Cc}/u.test(a)) ? (aliasesRaw as string[]).map((a) => a.trim()) : undefined;
  check(aliases !== undefined && aliases.length <= 100, 'aliases must be at most 100 names (an array in JSON, separated by ; in CSV)');
  const lei = text('lei', 20, false)?.toUpperCase();
  check(lei === undefined || isValidLei(lei), 'lei must be a valid LEI (ISO 17442)');
  const dateOfBirth = text('date_of_birth', 10, false);
  check(dateOfBirth === undefined || dateOfBirthPattern.test(dateOfBirth), 'date_of_birth must be YYYY, YYYY-MM or YYYY-MM-DD');
  const list = text('list', 32, true);
  check(list === undefined || listPattern.test(list), 'list must be a lowercase name such as sanctions or pep');
  const programme = text('programme', 200, false);
  if (problems > 0 || id === undefined || type === undefined || name === undefined || list === undefined || aliases === undefined) return undefined;
  const entry = {
    id,
    type: type as 'person' | 'entity',
    name,
    aliases,
    ...(lei !== undefined ? { lei } : {}),
    ...(dateOfBirth !== undefined ? { dateOfBirth } : {}),
    list,
    ...(programme !== undefined ? { programme } : {}),
  };
  const digest = createHash('sha256').update(JSON.stringify([entry.id, entry.type, entry.name, [...entry.aliases].sort(), lei ?? null, dateOfBirth ?? null, list, programme ?? null])).digest('hex');
  return { ...entry, digest };
}
