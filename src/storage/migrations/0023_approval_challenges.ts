import type { Kysely } from 'kysely';

/**
 * Passkey ceremonies of the approvals page (src/approvals/request-ceremony.ts, docs/approvals.md
 * "The approver's side"): one per person and request, replaced when the person starts again.
 * The WebAuthn challenge is approvalChallenge(digest, nonce): `digest` is the request's digest
 * when the ceremony started (an answer is refused if the request's digest differs by then), the
 * nonce 16 random bytes. Single use: the decision that uses it deletes it, conditionally on the
 * same nonce, in its own transaction; a refused answer deletes it too. Times are epoch ms.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('approval_challenges')
    .addColumn('request_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('nonce', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('approval_challenges_pk', ['request_id', 'user_id'])
    .execute();
  await db.schema.createIndex('approval_challenges_expires').on('approval_challenges').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('approval_challenges').execute();
}
