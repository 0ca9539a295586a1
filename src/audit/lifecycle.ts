import { sql } from 'kysely';
import type { Context } from '../context.ts';
import { AuditKeys, auditOrigin, type AuditKeyCustody } from './audit-key.ts';
import { isPostgres, sealerLockKey } from './dialect.ts';
import { AuditRecorder } from './recorder.ts';
import { AuditSealer, type SealerOptions } from './sealer.ts';

/** What the server runs beside the HTTP app. */
export interface AuditService {
  sealer: AuditSealer;
  /** Writes the recorder's queue, seals it, and stops the sealer. */
  stop(): Promise<void>;
}

/** The audit key's custody as configured (CLEARANCE_AUDIT_KEY_CUSTODY, CLEARANCE_PKCS11_*). */
export function auditKeyCustody(ctx: Pick<Context, 'config' | 'pki'>): AuditKeyCustody {
  return { kind: ctx.config.auditKeyCustody, custodies: ctx.pki.custodies };
}

/** A sealer for this context's store (not started). */
export function createSealer(ctx: Context, masterKey: Buffer, options: Partial<SealerOptions> = {}): AuditSealer {
  return new AuditSealer(ctx.storage.db, {
    clock: ctx.clock,
    keys: new AuditKeys(ctx.storage.db, masterKey, ctx.clock, auditKeyCustody(ctx)),
    origin: auditOrigin(ctx.config.issuer),
    log: ctx.log,
    ...options,
  });
}

/**
 * Starts sealing the audit log in this server process (docs/audit.md). On PostgreSQL only the node
 * holding the sealer lock seals; the others keep trying, and take over when it goes away.
 */
export async function startAuditService(ctx: Context, masterKey: Buffer, options: Partial<SealerOptions> = {}): Promise<AuditService> {
  // Unset, the sealer takes its dialect's default (sealer.ts `sealIntervalDefaults`).
  const sealer = createSealer(ctx, masterKey, { intervalMs: ctx.config.auditSealIntervalMs, ...options });
  // Create the audit key now, so a missing or wrong master key shows at startup.
  await new AuditKeys(ctx.storage.db, masterKey, ctx.clock, auditKeyCustody(ctx)).signingKey(auditOrigin(ctx.config.issuer));
  const recorder = ctx.audit instanceof AuditRecorder ? ctx.audit : undefined;
  const unsubscribe = recorder?.onCommitted((count) => sealer.notify(count));
  sealer.start();
  return {
    sealer,
    async stop() {
      await recorder?.close();
      unsubscribe?.();
      await sealer.stop();
    },
  };
}

/**
 * Seals everything committed, from a CLI process. On PostgreSQL it takes the sealer lock first and
 * returns undefined when a server holds it (that server seals).
 */
export async function sealNow(ctx: Context, masterKey: Buffer): Promise<number | undefined> {
  const sealer = createSealer(ctx, masterKey);
  if (!isPostgres(ctx.storage.db)) return sealer.sealAll();
  return ctx.storage.db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${sealerLockKey}) as locked`.execute(conn);
    if (!rows[0]?.locked) return undefined;
    try {
      return await sealer.sealAll(conn);
    } finally {
      await sql`select pg_advisory_unlock(${sealerLockKey})`.execute(conn);
    }
  });
}
