import type { Kysely } from 'kysely';

/**
 * Requests that a second (and third, …) person must approve (src/approvals/requests.ts,
 * docs/approvals.md): a CIBA authentication request, a recovery of a lost authenticator, a
 * break-glass activation — one table for "someone else must say yes", whatever the kind:
 * - `approval_requests`: what is to be approved (`content`, JSON, shown to every approver; its
 *   RFC 8785 SHA-256 `digest` is what an approver's passkey signs), who asked (`requester`), for
 *   whom (`subject`), through whom (`actors`, the act chain's subjects), how many approvals it
 *   needs, until when, and where it stands. `approvals` counts the approvals given so far: the
 *   decision that reaches `required_approvals` moves `status` to `approved` in the same
 *   conditional update, so two approvers deciding at once can neither both complete it nor lose
 *   a count (when the subject must approve too, `subject_approval` joins the same condition).
 *   A kind's own state (a CIBA request's polling, a recovery's enrolment link) lives in
 *   that kind's own table, keyed by the request id;
 * - `approval_decisions`: one row per approver and request (the primary key: nobody decides
 *   twice), how they proved it was them (passkey or a fresh token), at what level, and the
 *   SHA-256 of the evidence (the evidence itself is in the audit event);
 * - `alerts`: security events that need a human (src/signals/alerts.ts), an outbox written in the
 *   transaction of what raised them, delivered afterwards (webhooks) and queryable.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('approval_requests')
    .addColumn('id', 'text', (c) => c.primaryKey())
    // 'ciba' | 'recovery' | 'break_glass' (src/approvals/kinds.ts).
    .addColumn('kind', 'text', (c) => c.notNull())
    // 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'consumed'.
    .addColumn('status', 'text', (c) => c.notNull())
    // Who asked: a user id or a client id (requester_type says which).
    .addColumn('requester', 'text', (c) => c.notNull())
    .addColumn('requester_type', 'text', (c) => c.notNull())
    // The person the approval is about (the token's subject, the person recovering, the emergency account).
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('client_id', 'text')
    // JSON array of the act chain's subjects, outermost first (may be empty).
    .addColumn('actors', 'text', (c) => c.notNull())
    .addColumn('content', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('required_approvals', 'integer', (c) => c.notNull())
    .addColumn('approvals', 'integer', (c) => c.notNull())
    // 'none' (only others approve) | 'pending' | 'given': whether the subject must approve too (a
    // CIBA request: the person the token is for authenticates and approves on their own device).
    .addColumn('subject_approval', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .addColumn('consumed_at', 'bigint')
    .execute();
  await db.schema.createIndex('approval_requests_pending').on('approval_requests').columns(['status', 'expires_at']).execute();
  await db.schema.createIndex('approval_requests_subject').on('approval_requests').columns(['subject', 'created_at']).execute();
  await db.schema
    .createTable('approval_decisions')
    .addColumn('request_id', 'text', (c) => c.notNull())
    .addColumn('approver', 'text', (c) => c.notNull())
    // 'subject' (the person the request is about, approving for themselves) | 'approver' (a second person).
    .addColumn('role', 'text', (c) => c.notNull())
    // 'approve' | 'deny'.
    .addColumn('decision', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    // 'passkey' | 'token'.
    .addColumn('method', 'text', (c) => c.notNull())
    .addColumn('acr', 'text', (c) => c.notNull())
    .addColumn('amr', 'text', (c) => c.notNull())
    .addColumn('evidence_digest', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('approval_decisions_pk', ['request_id', 'approver'])
    .execute();
  await db.schema
    .createTable('alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('subject', 'text')
    // JSON: the alert's facts (never a secret).
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('alerts_created').on('alerts').column('created_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('alerts').execute();
  await db.schema.dropTable('approval_decisions').execute();
  await db.schema.dropTable('approval_requests').execute();
}
