import { createHash } from 'node:crypto';
import { DuplicateInstructionError, GuardError, type InstructionRecord } from './errors.ts';

/**
 * The idempotency guard: a settlement-affecting instruction runs at most once per transaction.
 * The key is the token's `txn` (the transaction id Clearance carries across every hop) and the
 * action (`settlement:submit`); an optional fingerprint (a hash of the instruction's content)
 * tells a retry of the same instruction from a different one that reuses the slot.
 *
 * The slot is claimed in the store before the work runs (one atomic insert), so of two identical
 * instructions — sequential or concurrent, in one process or, with a shared store, in several —
 * exactly one runs its work. The outcome is recorded when the work finishes; a failed work
 * releases the claim, so the instruction can be retried.
 */

/** A store of instruction records. `claim` must be atomic: of two concurrent claims of one slot, one wins. */
export interface IdempotencyStore {
  /** Claims the slot for `record` (state processing). Resolves undefined when claimed, else the record already there. */
  claim(record: StoredInstruction): Promise<StoredInstruction | undefined>;
  /** Marks a claimed slot done, with when and the result (JSON text). */
  complete(txn: string, action: string, processedAt: string, result: string | undefined): Promise<void>;
  /** Frees a slot still processing (its work failed). */
  release(txn: string, action: string): Promise<void>;
  get(txn: string, action: string): Promise<StoredInstruction | undefined>;
}

/** A record as stores keep it: the result as JSON text. */
export interface StoredInstruction {
  txn: string;
  action: string;
  fingerprint?: string | undefined;
  state: 'processing' | 'done';
  startedAt: string;
  processedAt?: string | undefined;
  result?: string | undefined;
}

/** One instruction. `txn` comes from the verified token (`access.txn`); a missing one is refused. */
export interface Instruction {
  txn: string | undefined;
  /** What the instruction does, e.g. `settlement:submit`. */
  action: string;
  /** A digest of the instruction's content (see `fingerprintOf`): the same txn + action with another fingerprint is a conflict. */
  fingerprint?: string | undefined;
}

export interface IdempotencyGuard {
  /**
   * Runs `work` once for this txn + action and records its result (which must be JSON; return a
   * reference such as `{ settlement_id }`, not a large document). Throws:
   * - 403 txn_required when `txn` is missing;
   * - 409 duplicate_instruction (DuplicateInstructionError, carrying the first record) for a
   *   second identical instruction, processed or still processing — its work is not run;
   * - 409 instruction_conflict for the same txn + action with another fingerprint;
   * - whatever `work` throws, after releasing the claim so the instruction can be retried.
   */
  once<T>(instruction: Instruction, work: () => Promise<T>): Promise<T>;
  /** The record of an instruction, if any. */
  get(txn: string, action: string): Promise<InstructionRecord | undefined>;
}

const maxKeyLength = 512;

/** Creates an idempotency guard on a store (MemoryIdempotencyStore, SqliteIdempotencyStore, or your own). */
export function createIdempotencyGuard(options: { store: IdempotencyStore; now?: () => number }): IdempotencyGuard {
  const { store } = options;
  const now = options.now ?? Date.now;

  async function once<T>(instruction: Instruction, work: () => Promise<T>): Promise<T> {
    const { txn, action, fingerprint } = instruction;
    // A settlement-affecting call needs a transaction id: without it, retries cannot be recognised.
    if (typeof txn !== 'string' || txn.length === 0) {
      throw new GuardError({ status: 403, error: 'txn_required', description: `a ${action} instruction needs an access token with a txn (transaction id)`, detail: 'no txn claim' });
    }
    if (txn.length > maxKeyLength || action.length === 0 || action.length > maxKeyLength || (fingerprint !== undefined && fingerprint.length > maxKeyLength)) {
      throw new RangeError('txn, action and fingerprint must be 1-512 characters');
    }
    const existing = await store.claim({ txn, action, fingerprint, state: 'processing', startedAt: new Date(now()).toISOString() });
    if (existing) {
      const record = toRecord(existing);
      throw new DuplicateInstructionError((existing.fingerprint ?? null) === (fingerprint ?? null) ? 'duplicate_instruction' : 'instruction_conflict', record);
    }
    let result: T;
    try {
      result = await work();
    } catch (error) {
      // The work failed: free the slot so the same instruction can be tried again.
      await store.release(txn, action).catch(() => undefined);
      throw error;
    }
    await store.complete(txn, action, new Date(now()).toISOString(), resultJson(result));
    return result;
  }

  return {
    once,
    async get(txn, action) {
      const stored = await store.get(txn, action);
      return stored && toRecord(stored);
    },
  };
}

/** The work's result as JSON text; a result JSON cannot hold is recorded as none (the slot is still done). */
function resultJson(result: unknown): string | undefined {
  try {
    return result === undefined ? undefined : JSON.stringify(result);
  } catch {
    return undefined;
  }
}

function toRecord(stored: StoredInstruction): InstructionRecord {
  return {
    txn: stored.txn,
    action: stored.action,
    ...(stored.fingerprint != null ? { fingerprint: stored.fingerprint } : {}),
    state: stored.state,
    startedAt: stored.startedAt,
    ...(stored.processedAt != null ? { processedAt: stored.processedAt } : {}),
    ...(stored.result != null ? { result: JSON.parse(stored.result) as unknown } : {}),
  };
}

/**
 * A fingerprint of an instruction's content: SHA-256 (base64url) of its JSON with object keys
 * sorted, so the same instruction always has the same fingerprint whatever its key order.
 */
export function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Records in memory: for tests and a single process that may forget its records on restart.
 * Claims are atomic (one synchronous check-and-set on the event loop). Unbounded: records are
 * kept until `delete`/`clear`.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #records = new Map<string, StoredInstruction>();

  async claim(record: StoredInstruction): Promise<StoredInstruction | undefined> {
    const key = slot(record.txn, record.action);
    const existing = this.#records.get(key);
    if (existing) return { ...existing };
    this.#records.set(key, { ...record });
    return undefined;
  }

  async complete(txn: string, action: string, processedAt: string, result: string | undefined): Promise<void> {
    const record = this.#records.get(slot(txn, action));
    if (record?.state === 'processing') Object.assign(record, { state: 'done', processedAt, result });
  }

  async release(txn: string, action: string): Promise<void> {
    const key = slot(txn, action);
    if (this.#records.get(key)?.state === 'processing') this.#records.delete(key);
  }

  async get(txn: string, action: string): Promise<StoredInstruction | undefined> {
    const record = this.#records.get(slot(txn, action));
    return record && { ...record };
  }

  clear(): void {
    this.#records.clear();
  }
}

function slot(txn: string, action: string): string {
  return `${txn}\u0000${action}`;
}
