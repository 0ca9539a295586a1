import { adminOperation } from '../../admin/authorize.ts';
import { sealState } from '../../audit/activity.ts';
import { AuditKeys } from '../../audit/audit-key.ts';
import type { StoredAuditEvent } from '../../audit/events.ts';
import { storedCheckpoint } from '../../audit/proofs.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * GET <issuer>/admin/audit/status (audit:read): the log's verification status, as the console's
 * audit explorer shows it — the latest signed checkpoint, the audit key's fingerprint, what is not
 * sealed yet and for how long, and the last full verification (`clearance audit verify` records
 * each as `audit.verified`: when, by whom, intact or not, the tree it covered). Facts about the
 * log, never an event's content, so the read itself is not recorded.
 */
export const auditStatus: Endpoint = {
  register(app, ctx) {
    app.get(
      `${issuerPath(ctx.config.issuer)}/admin/audit/status`,
      adminOperation(ctx, 'audit:read', { tag: 'audit', summary: "The log's verification status: latest checkpoint, audit key, sealing lag, last full verification" }),
      async (_request, reply) => {
        const db = ctx.storage.db;
        const now = ctx.clock.now();
        const [checkpoint, key, seal, verified] = await Promise.all([
          storedCheckpoint(db),
          new AuditKeys(db, undefined, ctx.clock).currentPublicKey(),
          sealState(db, now),
          db.selectFrom('audit_events').select('event').where('type', '=', 'audit.verified').orderBy('seq', 'desc').limit(1).executeTakeFirst(),
        ]);
        const last = verified && (JSON.parse(verified.event) as StoredAuditEvent);
        reply.header('cache-control', 'no-store');
        return {
          checkpoint: checkpoint ?? null,
          audit_key: key ? { key_id: key.keyId, origin: key.origin } : null,
          unsealed: seal.unsealed,
          lag_ms: seal.lag_ms,
          last_verify: last
            ? {
                time: new Date(last.time).toISOString(),
                by: last.actor ?? null,
                ok: last.details?.ok === true,
                tree_size: last.details?.tree_size ?? null,
                leaves: last.details?.leaves ?? null,
                against_external_checkpoint: last.details?.against_external_checkpoint === true,
                event: last.id,
              }
            : null,
        };
      },
    );
  },
};
