import type { Kysely } from 'kysely';

/**
 * What-you-see-is-what-you-sign approvals (src/approvals, docs/authentication.md "Approving an
 * order"), on the authorization request they belong to:
 * - `interactions.approval_challenge`: the ceremony the consent page started (JSON: the digest of
 *   the entries to approve and the server's nonce, until when) — single use: the approval that
 *   answers it clears it in its own transaction;
 * - `interactions.approval`: the verified approval (JSON: its id, the digest, the credential id,
 *   when), which the code, and the tokens of that code, carry. The evidence itself is in the
 *   `approval.given` audit event.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('interactions').addColumn('approval_challenge', 'text').execute();
  await db.schema.alterTable('interactions').addColumn('approval', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('interactions').dropColumn('approval').execute();
  await db.schema.alterTable('interactions').dropColumn('approval_challenge').execute();
}
