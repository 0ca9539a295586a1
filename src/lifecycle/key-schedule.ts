/**
 * Signing keys on a schedule (docs/lifecycle.md "Signing keys on a schedule", DESIGN §2 lifecycle/).
 *
 * Every node runs the schedule; each tick it works out from the keys it already caches whether a
 * step is due, and only then takes the database lease (./lease.ts), reads the keys again from the
 * database and performs what is still due — so of several nodes exactly one rotates, and a node
 * that ran late finds the work done. The steps:
 *
 * 1. **rotate** the token-signing key once it has signed for the rotation interval: a new key is
 *    published in the JWKS at once and signs only after the activation lead (the rotation overlap,
 *    never less than the JWKS cache lifetime), so a relying party that caches the JWKS has the key
 *    before the first token it signs;
 * 2. **retire** each superseded key once retirable — every token it signed has expired (the longest
 *    token lifetime, and a margin, after it stopped signing: KeyStore.list) — removing it from the
 *    JWKS;
 * 3. **rotate the audit checkpoint key** once it is older than its own interval; old audit keys
 *    are kept, so every checkpoint stays verifiable.
 *
 * Every node follows without being told: the new key's row bumps the `keys` generation, so every
 * node's JWKS publishes it within its cache check (a change notice on PostgreSQL, else a second),
 * long before the activation time at which every node starts signing with it by its own clock;
 * the sealer of whichever node seals asks for the newest audit key each round.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { AuditKeys } from '../audit/audit-key.ts';
import { auditKeyCustody } from '../audit/lifecycle.ts';
import type { Context } from '../context.ts';
import { jwksMaxAge } from '../endpoints/jwks/index.ts';
import type { KeyInfo } from '../keys/keystore.ts';
import { nodeId } from '../log.ts';
import { acquireLease, leaseHolder, releaseLease, type LeaseHolder } from './lease.ts';

const dayMs = 86_400_000;

/** The lease every step of the key schedule runs under. */
export const keyScheduleLease = 'key-schedule';

export interface KeyScheduleOptions {
  /** How long a token-signing key signs before it is rotated, ms; 0: no schedule (by hand only). Default: CLEARANCE_KEY_ROTATION_DAYS. */
  rotationMs?: number;
  /** How long an audit checkpoint key signs before it is rotated, ms; 0: never. Default: CLEARANCE_AUDIT_KEY_ROTATION_DAYS. */
  auditRotationMs?: number;
  /** How often each node looks for a due step, ms (default 60 s). */
  tickMs?: number;
  /** How long a node holds the lease at most, ms (default 2 min): a node that dies mid-step frees it so. */
  leaseMs?: number;
  /** Names this scheduler in the lease and the audit events (default `<host>:<pid>/<random>`). */
  holder?: string;
  /** The master key, for rotating audit keys (software custody seals them with it). */
  masterKey?: Buffer;
  log?: Logger;
}

/** What is due now, by the keys as seen. */
export interface DueSteps {
  /** The active key rotates (no next key is pending, and it has signed for the interval). */
  rotate: boolean;
  /** Superseded keys whose every token has expired. */
  retire: string[];
  /** The audit key rotates. */
  rotateAudit: boolean;
}

/** What one run did. */
export interface StepReport {
  /** False when a step was due but another node held the lease. */
  ran: boolean;
  rotated?: KeyInfo;
  retired: string[];
  auditRotated?: { previous: string; current: string };
}

/** Audit keys as the schedule reads them. */
export interface AuditKeyInfo {
  keyId: string;
  origin: string;
  createdAt: number;
  custody: 'software' | 'pkcs11';
  /** The newest key signs checkpoints; the others verify what they signed. */
  state: 'signing' | 'verifying';
}

/** The schedule and every key, for `clearance keys status`. */
export interface ScheduleStatus {
  now: number;
  tokenKeys: {
    rotationDays: number;
    /** How long a new key is published before it signs, seconds. */
    activationLeadSeconds: number;
    /** The JWKS Cache-Control max-age, seconds. */
    jwksMaxAgeSeconds: number;
    /** When the schedule next rotates (ms), if it is on. */
    nextRotationAt?: number;
    /** When the next superseded key becomes retirable (ms), if any is. */
    nextRetirementAt?: number;
    keys: (KeyInfo & { ageSeconds: number })[];
  };
  auditKeys: {
    rotationDays: number;
    nextRotationAt?: number;
    keys: (AuditKeyInfo & { ageSeconds: number })[];
  };
  /** Who ran (or runs) the last step: the lease's holder. */
  lease?: LeaseHolder;
}

type ScheduleContext = Pick<Context, 'config' | 'storage' | 'keys' | 'clock' | 'audit' | 'pki'>;

/**
 * Seconds a scheduled key is published before it signs: the rotation overlap, and never less than
 * the JWKS cache lifetime (a relying party honouring Cache-Control has fetched it by then).
 */
export function activationLeadSeconds(overlapSeconds: number): number {
  return Math.max(overlapSeconds, jwksMaxAge(overlapSeconds));
}

/** When the active key is due to rotate: its creation plus the interval (the pending key's, if one waits). */
export function nextRotationAt(keys: KeyInfo[], rotationMs: number): number | undefined {
  if (rotationMs <= 0) return undefined;
  const live = keys.filter((k) => k.state === 'active' || k.state === 'next');
  if (live.length === 0) return undefined;
  return Math.max(...live.map((k) => k.createdAt)) + rotationMs;
}

/** The steps due at `now` (pure: the schedule's whole rule). */
export function dueSteps(keys: KeyInfo[], auditKeys: Pick<AuditKeyInfo, 'createdAt'>[], now: number, rotationMs: number, auditRotationMs: number): DueSteps {
  const rotateAt = nextRotationAt(keys, rotationMs);
  const pending = keys.some((k) => k.state === 'next');
  const newestAudit = auditKeys.length ? Math.max(...auditKeys.map((k) => k.createdAt)) : undefined;
  return {
    rotate: rotateAt !== undefined && !pending && now >= rotateAt,
    // Retirement is part of the token-key schedule: off with it, by hand (`clearance keys retire`).
    retire: rotationMs > 0 ? keys.filter((k) => k.state === 'retirable').map((k) => k.kid) : [],
    rotateAudit: auditRotationMs > 0 && newestAudit !== undefined && now >= newestAudit + auditRotationMs,
  };
}

/** The key schedule of one node; `start` it beside the server, `stop` it before the database closes. */
export class KeySchedule {
  readonly #ctx: ScheduleContext;
  readonly #rotationMs: number;
  readonly #auditRotationMs: number;
  readonly #tickMs: number;
  readonly #leaseMs: number;
  readonly #log: Logger | undefined;
  readonly #auditKeys: AuditKeys;
  /** This scheduler, in the lease and in the audit events. */
  readonly holder: string;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(ctx: ScheduleContext, options: KeyScheduleOptions = {}) {
    this.#ctx = ctx;
    this.#rotationMs = options.rotationMs ?? ctx.config.keyRotationDays * dayMs;
    this.#auditRotationMs = options.auditRotationMs ?? ctx.config.auditKeyRotationDays * dayMs;
    this.#tickMs = options.tickMs ?? 60_000;
    this.#leaseMs = options.leaseMs ?? 120_000;
    this.#log = options.log;
    this.holder = options.holder ?? `${nodeId}/${randomBytes(4).toString('hex')}`;
    this.#auditKeys = new AuditKeys(ctx.storage.db, options.masterKey, ctx.clock, auditKeyCustody(ctx));
  }

  /** What is due now, by what this node sees (its cached keys). */
  async due(): Promise<DueSteps> {
    return dueSteps(await this.#ctx.keys.list(), await this.#auditKeys.list(), this.#ctx.clock.now(), this.#rotationMs, this.#auditRotationMs);
  }

  /**
   * One tick: when a step is due, takes the lease, reads the keys again from the database, and
   * performs what is still due; then gives the lease up. Nothing due: no write at all.
   */
  async runOnce(): Promise<StepReport> {
    const report: StepReport = { ran: false, retired: [] };
    const seen = await this.due();
    if (!seen.rotate && seen.retire.length === 0 && !seen.rotateAudit) return report;
    const db = this.#ctx.storage.db;
    if (!(await acquireLease(db, keyScheduleLease, this.holder, this.#ctx.clock.now(), this.#leaseMs))) return report;
    report.ran = true;
    try {
      // Another node may have run the step a moment ago: decide on the database's keys, not the cache's.
      this.#ctx.keys.invalidate();
      const due = await this.due();
      const scheduled = { scheduled: true, node: this.holder };
      if (due.rotate) {
        report.rotated = await this.#ctx.keys.rotate(this.#ctx.config.signingAlg, activationLeadSeconds(this.#ctx.config.keyOverlapSeconds), scheduled);
        this.#log?.info({ kid: report.rotated.kid, activatesAt: new Date(report.rotated.activatesAt).toISOString() }, 'key schedule: rotated the token-signing key');
      }
      for (const kid of due.retire) {
        await this.#ctx.keys.retire(kid, scheduled);
        report.retired.push(kid);
        this.#log?.info({ kid }, 'key schedule: retired a token-signing key');
      }
      if (due.rotateAudit) {
        const newest = (await this.#auditKeys.list()).at(-1);
        const rotated = newest && (await this.#auditKeys.rotate({ expected: newest.keyId }));
        if (rotated) {
          report.auditRotated = { previous: rotated.previous.keyId, current: rotated.current.keyId };
          await recordAuditKeyRotation(this.#ctx, rotated.previous.keyId, rotated.current.keyId, scheduled);
          this.#log?.info({ keyId: rotated.current.keyId }, 'key schedule: rotated the audit checkpoint key');
        }
      }
      return report;
    } finally {
      await releaseLease(db, keyScheduleLease, this.holder, this.#ctx.clock.now());
    }
  }

  /** Runs a tick at once and then every `tickMs`; the timer does not keep the process alive. */
  start(): void {
    if (this.#timer) return;
    const tick = () => {
      // One tick at a time: a slow database must not pile them up.
      if (this.#running) return;
      this.#running = this.runOnce()
        .catch((error: unknown) => this.#log?.error({ err: error }, 'key schedule: the step failed; tried again next tick'))
        .finally(() => (this.#running = undefined));
    };
    this.#timer = setInterval(tick, this.#tickMs);
    this.#timer.unref();
    setImmediate(tick);
  }

  /** Stops ticking and waits for a step in progress (before the database closes). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** The schedule and every key, with ages. */
  async status(): Promise<ScheduleStatus> {
    const now = this.#ctx.clock.now();
    const keys = await this.#ctx.keys.list();
    const auditKeys = await this.#auditKeys.list();
    const superseded = keys.filter((k) => k.state === 'superseded').map((k) => k.retirableAt!);
    const retirable = keys.some((k) => k.state === 'retirable');
    const auditNewest = auditKeys.length ? Math.max(...auditKeys.map((k) => k.createdAt)) : undefined;
    const age = (createdAt: number) => Math.max(0, Math.floor((now - createdAt) / 1000));
    const lease = await leaseHolder(this.#ctx.storage.db, keyScheduleLease);
    const nextRotation = nextRotationAt(keys, this.#rotationMs);
    const nextRetirement = this.#rotationMs > 0 ? (retirable ? now : superseded.length ? Math.min(...superseded) : undefined) : undefined;
    return {
      now,
      tokenKeys: {
        rotationDays: this.#rotationMs / dayMs,
        activationLeadSeconds: activationLeadSeconds(this.#ctx.config.keyOverlapSeconds),
        jwksMaxAgeSeconds: jwksMaxAge(this.#ctx.config.keyOverlapSeconds),
        ...(nextRotation !== undefined ? { nextRotationAt: nextRotation } : {}),
        ...(nextRetirement !== undefined ? { nextRetirementAt: nextRetirement } : {}),
        keys: keys.map((k) => ({ ...k, ageSeconds: age(k.createdAt) })),
      },
      auditKeys: {
        rotationDays: this.#auditRotationMs / dayMs,
        ...(this.#auditRotationMs > 0 && auditNewest !== undefined ? { nextRotationAt: auditNewest + this.#auditRotationMs } : {}),
        keys: auditKeys.map((k) => ({ ...k, state: k.createdAt === auditNewest ? 'signing' : 'verifying', ageSeconds: age(k.createdAt) })),
      },
      ...(lease ? { lease } : {}),
    };
  }
}

/**
 * Records an audit key rotation (`audit.key_rotated`): both key ids, so an auditor who pinned the
 * old key learns the new one from the log it signed, and who did it (`scheduled` and the node, or
 * the operator).
 */
export async function recordAuditKeyRotation(ctx: Pick<Context, 'audit'>, previous: string, current: string, details: Record<string, unknown>, actor?: string): Promise<void> {
  await ctx.audit.record({ type: 'audit.key_rotated', subject: current, ...(actor ? { actor } : {}), details: { previous_key_id: previous, key_id: current, ...details } });
}
