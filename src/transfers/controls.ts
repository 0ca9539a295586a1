import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { isValidLei } from '../entities/lei.ts';
import { bumpGeneration, GenerationCache } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { join, type Validator } from '../validation.ts';
import { parseAmount } from './amounts.ts';
import { assetKey } from './detail.ts';

/**
 * Apply's `transfer_controls` section (docs/transfers.md "Enforcement at issuance", docs/apply.md):
 * the limits transfers are held to at token issuance, per legal entity, account and asset.
 *
 *   transfer_controls:
 *     defaults:                               # every legal entity, unless it says otherwise
 *       first_use_hold: 600                   # seconds after a destination's cool-down ends during which its first use needs a second person (0: off)
 *       assets:
 *         USD: { approval_threshold: "1000000", daily_limit: "5000000" }
 *     entities:
 *       5493001KJTIIGC8Y1R12:
 *         first_use_hold: 0
 *         assets:
 *           USD: { approval_threshold: "250000", daily_limit: "2000000" }
 *           "eip155:1/slip44:60": { approval_threshold: "10", daily_limit: "100" }
 *         accounts:
 *           ACC-1: { USD: { daily_limit: "500000" } }
 *
 * - `approval_threshold`: a transfer of this amount or more needs a second person's approval, per
 *   transfer (a CIBA request, src/approvals/four-eyes.ts); `daily_limit`: the rolling 24-hour total
 *   per account and asset (./totals.ts). Amounts are positive decimals (strings or numbers) in the
 *   asset's units, at most 6 decimals; `off` switches one off where a broader level set it.
 * - The most specific level wins, per value: the account's, then its legal entity's, then the
 *   defaults. An asset no level names has neither (the address book still applies).
 * - The address book's cool-down is not here: it is apply's `transfer_destinations.cooldowns`
 *   (src/transfers/address-book.ts), with the destinations it governs.
 * - The section, when a document names it, is the whole of it: stored as one row (so every node
 *   reads the same), reloaded by every node within a second of apply (generation `transfer_controls`).
 */

/** The table (migration 0054_transfer_totals): apply's section, as one JSON row named `controls`. */
export interface TransferControlTables {
  transfer_controls: {
    name: string;
    /** The section as validated, JSON (`TransferControls`). */
    value: string;
    updated_at: number;
  };
}

/** One asset's limits at one level; `null`: switched off at this level (`off`). Amounts in micro-units (./amounts.ts). */
export interface AssetLimits {
  approvalThreshold?: bigint | null;
  dailyLimit?: bigint | null;
}

/** One level's settings: the defaults or a legal entity's. */
export interface ControlLevel {
  firstUseHoldSeconds?: number;
  assets: Map<string, AssetLimits>;
}

export interface TransferControls {
  defaults: ControlLevel;
  entities: Map<string, ControlLevel & { accounts: Map<string, Map<string, AssetLimits>> }>;
}

/** The first-use hold when nothing is configured: ten minutes after a cool-down ends. */
export const defaultFirstUseHoldSeconds = 600;

export const emptyControls: TransferControls = { defaults: { assets: new Map() }, entities: new Map() };

/** What applies to one transfer: its threshold and daily limit (undefined: none), and the entity's hold. */
export interface EffectiveControls {
  approvalThreshold?: bigint;
  dailyLimit?: bigint;
  firstUseHoldSeconds: number;
}

/**
 * The limits for a transfer from `account` (of legal entity `lei`) in `asset`, the most specific
 * level first. The asset is looked up by its canonical key (./detail.ts `assetKey`), as the
 * section's keys are stored: an ERC-20 token's limits apply however a request spells its address.
 */
export function controlsFor(controls: TransferControls, lei: string, account: string, given: string): EffectiveControls {
  const asset = assetKey(given);
  const entity = controls.entities.get(lei);
  const levels: (AssetLimits | undefined)[] = [entity?.accounts.get(account)?.get(asset), entity?.assets.get(asset), controls.defaults.assets.get(asset)];
  const pick = (field: keyof AssetLimits): bigint | undefined => {
    for (const level of levels) {
      const value = level?.[field];
      if (value === null) return undefined; // `off` at this level
      if (value !== undefined) return value;
    }
    return undefined;
  };
  const threshold = pick('approvalThreshold');
  const limit = pick('dailyLimit');
  return {
    ...(threshold !== undefined ? { approvalThreshold: threshold } : {}),
    ...(limit !== undefined ? { dailyLimit: limit } : {}),
    firstUseHoldSeconds: entity?.firstUseHoldSeconds ?? controls.defaults.firstUseHoldSeconds ?? defaultFirstUseHoldSeconds,
  };
}

// ---- apply: validation -------------------------------------------------------------------------

const levelKeys = ['first_use_hold', 'assets'];
/** An ISO 4217 code or a CAIP-19 asset id (the transfer type validates them fully; here only their shape). */
const assetPattern = /^(?:[A-Z]{3}|[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}\/[-a-z0-9]{3,8}:[-.%a-zA-Z0-9]{1,128}(?:\/[-.%a-zA-Z0-9]{1,78})?)$/;
const accountPattern = /^[\x21-\x7e]{1,128}$/;
const maxEntries = 1000;

/** Validates apply's `transfer_controls` section, recording every problem under `path`. */
export function readTransferControlsSection(v: Validator, path: string, value: unknown): TransferControls | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['defaults', 'entities']);
  const defaults = o.defaults === undefined ? { assets: new Map() } : readLevel(v, join(path, 'defaults'), o.defaults, []);
  const entities: TransferControls['entities'] = new Map();
  if (o.entities !== undefined) {
    const list = v.object(join(path, 'entities'), o.entities);
    if (list && Object.keys(list).length > maxEntries) v.fail(join(path, 'entities'), `must name at most ${maxEntries} legal entities`);
    for (const [lei, entry] of Object.entries(list ?? {})) {
      const at = join(join(path, 'entities'), lei);
      if (!/^[0-9A-Z]{20}$/.test(lei) || !isValidLei(lei)) {
        v.fail(at, 'is not a valid LEI (ISO 17442: 20 characters, check digits)');
        continue;
      }
      const level = readLevel(v, at, entry, ['accounts']);
      if (!level) continue;
      const accounts = new Map<string, Map<string, AssetLimits>>();
      const raw = (entry as Record<string, unknown>).accounts;
      if (raw !== undefined) {
        const byAccount = v.object(join(at, 'accounts'), raw);
        for (const [account, assets] of Object.entries(byAccount ?? {})) {
          const accountPath = join(join(at, 'accounts'), account);
          if (!accountPattern.test(account)) {
            v.fail(accountPath, 'is not an account id');
            continue;
          }
          const read = readAssets(v, accountPath, assets);
          if (read) accounts.set(account, read);
        }
      }
      entities.set(lei, { ...level, accounts });
    }
  }
  return v.problems.length === before && defaults ? { defaults, entities } : undefined;
}

function readLevel(v: Validator, path: string, value: unknown, extra: readonly string[]): ControlLevel | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, [...levelKeys, ...extra]);
  const level: ControlLevel = { assets: new Map() };
  if (o.first_use_hold !== undefined) {
    const seconds = v.integer(join(path, 'first_use_hold'), o.first_use_hold, { min: 0, max: 86_400 });
    if (seconds !== undefined) level.firstUseHoldSeconds = seconds;
  }
  if (o.assets !== undefined) level.assets = readAssets(v, join(path, 'assets'), o.assets) ?? new Map();
  return level;
}

function readAssets(v: Validator, path: string, value: unknown): Map<string, AssetLimits> | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  if (Object.keys(o).length > maxEntries) v.fail(path, `must name at most ${maxEntries} assets`);
  const assets = new Map<string, AssetLimits>();
  // Declared spellings by canonical key: two spellings of one asset (an ERC-20 address in EIP-55
  // and in lower case) would be two entries of which a transfer finds one — refused.
  const spellings = new Map<string, string>();
  for (const [given, limits] of Object.entries(o)) {
    const at = join(path, given);
    if (!assetPattern.test(given)) {
      v.fail(at, 'is not an ISO 4217 currency code or a CAIP-19 asset id');
      continue;
    }
    const asset = assetKey(given);
    const other = spellings.get(asset);
    if (other !== undefined) {
      v.fail(at, `is the asset ${asset} again (also declared as ${JSON.stringify(other)}): declare each asset once`);
      continue;
    }
    spellings.set(asset, given);
    const l = v.object(at, limits);
    if (!l) continue;
    v.knownKeys(at, l, ['approval_threshold', 'daily_limit']);
    const read: AssetLimits = {};
    if (l.approval_threshold !== undefined) {
      const amount = readLimit(v, join(at, 'approval_threshold'), l.approval_threshold);
      if (amount !== undefined) read.approvalThreshold = amount;
    }
    if (l.daily_limit !== undefined) {
      const amount = readLimit(v, join(at, 'daily_limit'), l.daily_limit);
      if (amount !== undefined) read.dailyLimit = amount;
    }
    assets.set(asset, read);
  }
  return assets;
}

/** `off` (null), or a positive decimal of at most 6 decimals, in micro-units. */
function readLimit(v: Validator, path: string, value: unknown): bigint | null | undefined {
  if (value === 'off') return null;
  const amount = typeof value === 'string' || typeof value === 'number' ? parseAmount(value, 'exact') : undefined;
  if (amount === undefined || amount <= 0n) return v.fail(path, 'must be a positive decimal amount (at most 6 decimals, below 9,000,000,000) or off');
  return amount;
}

// ---- storage -----------------------------------------------------------------------------------

const generation = 'transfer_controls';
const rowName = 'controls';

type Change = { kind: 'transfer_controls'; id: string; outcome: 'created' | 'updated' | 'unchanged' };

/** Stores the section (the whole of it), inside the apply transaction. */
export async function upsertTransferControls(trx: Transaction<Database>, now: number, controls: TransferControls): Promise<Change[]> {
  const value = JSON.stringify(serialize(controls));
  const stored = await trx.selectFrom('transfer_controls').select('value').where('name', '=', rowName).executeTakeFirst();
  if (stored?.value === value) return [{ kind: 'transfer_controls', id: 'transfer_controls', outcome: 'unchanged' }];
  if (stored) await trx.updateTable('transfer_controls').set({ value, updated_at: now }).where('name', '=', rowName).execute();
  else await trx.insertInto('transfer_controls').values({ name: rowName, value, updated_at: now }).execute();
  await bumpGeneration(trx, generation);
  return [{ kind: 'transfer_controls', id: 'transfer_controls', outcome: stored ? 'updated' : 'created' }];
}

/** The controls in force (none stored: no thresholds, no limits, the default first-use hold). */
export async function loadTransferControls(db: Kysely<Database>): Promise<TransferControls> {
  const row = await db.selectFrom('transfer_controls').select('value').where('name', '=', rowName).executeTakeFirst();
  return row ? deserialize(JSON.parse(row.value) as StoredControls) : emptyControls;
}

/** Where enforcement and the address book read the controls: cached per process, reloaded on change by any node. */
export interface TransferControlSource {
  get(): Promise<TransferControls>;
  /** After this process wrote them (apply): reload on the next read. */
  invalidate(): void;
}

const sources = new WeakMap<object, TransferControlSource>();

/** The controls of this database, one cache per storage handle (every node and CLI process has its own). */
export function transferControls(ctx: { storage: { db: Kysely<Database> }; clock: Clock }): TransferControlSource {
  let source = sources.get(ctx.storage);
  if (!source) {
    const cache = new GenerationCache(ctx.storage.db, generation, () => loadTransferControls(ctx.storage.db), ctx.clock);
    source = { get: () => cache.get(), invalidate: () => cache.invalidate() };
    sources.set(ctx.storage, source);
  }
  return source;
}

// The stored form: plain JSON, amounts as decimal strings of micro-units, `off` as null.
type StoredLimits = { t?: string | null; d?: string | null };
type StoredLevel = { first_use_hold?: number; assets: Record<string, StoredLimits> };
type StoredControls = { defaults: StoredLevel; entities: Record<string, StoredLevel & { accounts: Record<string, Record<string, StoredLimits>> }> };

const limitsOut = (l: AssetLimits): StoredLimits => ({
  ...(l.approvalThreshold !== undefined ? { t: l.approvalThreshold === null ? null : l.approvalThreshold.toString() } : {}),
  ...(l.dailyLimit !== undefined ? { d: l.dailyLimit === null ? null : l.dailyLimit.toString() } : {}),
});
const limitsIn = (l: StoredLimits): AssetLimits => ({
  ...(l.t !== undefined ? { approvalThreshold: l.t === null ? null : BigInt(l.t) } : {}),
  ...(l.d !== undefined ? { dailyLimit: l.d === null ? null : BigInt(l.d) } : {}),
});
const assetsOut = (m: Map<string, AssetLimits>) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, l]) => [k, limitsOut(l)]));
// Keys canonical: a section stored before assets were normalised is read as if it had been, two
// spellings it held of one asset merged value by value to the stricter (fail closed).
const assetsIn = (o: Record<string, StoredLimits>) => {
  const out = new Map<string, AssetLimits>();
  for (const [k, l] of Object.entries(o)) {
    const key = assetKey(k);
    const read = limitsIn(l);
    const had = out.get(key);
    out.set(key, had ? { ...stricter('approvalThreshold', had, read), ...stricter('dailyLimit', had, read) } : read);
  }
  return out;
};
function stricter(field: keyof AssetLimits, a: AssetLimits, b: AssetLimits): AssetLimits {
  const x = a[field];
  const y = b[field];
  const values = [x, y].filter((v): v is bigint => typeof v === 'bigint');
  if (values.length > 0) return { [field]: values.reduce((m, v) => (v < m ? v : m)) };
  const either = x !== undefined ? x : y;
  return either !== undefined ? { [field]: either } : {};
}
const levelOut = (l: ControlLevel): StoredLevel => ({
  ...(l.firstUseHoldSeconds !== undefined ? { first_use_hold: l.firstUseHoldSeconds } : {}),
  assets: assetsOut(l.assets),
});
const levelIn = (l: StoredLevel): ControlLevel => ({
  ...(l.first_use_hold !== undefined ? { firstUseHoldSeconds: l.first_use_hold } : {}),
  assets: assetsIn(l.assets ?? {}),
});

function serialize(c: TransferControls): StoredControls {
  const entities = [...c.entities].sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    defaults: levelOut(c.defaults),
    entities: Object.fromEntries(entities.map(([lei, e]) => [lei, { ...levelOut(e), accounts: Object.fromEntries([...e.accounts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, m]) => [id, assetsOut(m)])) }])),
  };
}

function deserialize(s: StoredControls): TransferControls {
  return {
    defaults: levelIn(s.defaults ?? { assets: {} }),
    entities: new Map(Object.entries(s.entities ?? {}).map(([lei, e]) => [lei, { ...levelIn(e), accounts: new Map(Object.entries(e.accounts ?? {}).map(([id, m]) => [id, assetsIn(m)])) }])),
  };
}
