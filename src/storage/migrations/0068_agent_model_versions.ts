import { sql, type Kysely } from 'kysely';

/**
 * An agent's model version is pending or approved once at most (src/agents/models.ts proposeModel,
 * docs/agents.md "Model versions"): a unique index over (agent_id, version) of the bindings pending
 * or approved. The check before the insert alone let two concurrent proposals of one version both
 * through — two approval requests, and two approved bindings of "2.0.0" possibly of different
 * artifacts; now the second insert fails, answered 409. A denied or retired binding is outside the
 * index: the same version may be proposed again after a denial or to roll back.
 *
 * Such a race before this migration may have left two: the binding approved first (else proposed
 * first) is kept; another pending one is denied, another approved one retired and the certificates
 * attested for it revoked (privilegeWithdrawn, as a retirement revokes them), so the index can be made.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await settleDuplicates(db as Kysely<Migrating>, Date.now());
  await db.schema
    .createIndex('agent_models_live_version')
    .unique()
    .on('agent_models')
    .columns(['agent_id', 'version'])
    .where(sql<boolean>`status in ('pending', 'approved')`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('agent_models_live_version').execute();
}

interface Migrating {
  agent_models: { id: string; agent_id: string; version: string; status: string; approved_at: number | null; retired_at: number | null; created_at: number };
  agent_credentials: { serial: string; model_id: string };
  pki_certificates: { serial: string; status: string; revoked_at: number | null; revocation_reason: number | null; revoked_by: string | null };
  generations: { name: string; value: number };
}

/** RFC 5280 §5.3.1 privilegeWithdrawn (src/pki/revocation.ts). */
const privilegeWithdrawn = 9;

async function settleDuplicates(db: Kysely<Migrating>, now: number): Promise<void> {
  const live = await db.selectFrom('agent_models').select(['id', 'agent_id', 'version', 'status', 'approved_at', 'created_at']).where('status', 'in', ['pending', 'approved']).execute();
  const kept = new Set<string>();
  // Approved before pending, then the earlier approval, then the earlier proposal.
  const order = (m: (typeof live)[number]) => [m.status === 'approved' ? 0 : 1, Number(m.approved_at ?? 0), Number(m.created_at), m.id] as const;
  live.sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
    return 0;
  });
  let revoked = false;
  for (const model of live) {
    const key = JSON.stringify([model.agent_id, model.version]);
    if (!kept.has(key)) {
      kept.add(key);
      continue;
    }
    if (model.status === 'pending') {
      await db.updateTable('agent_models').set({ status: 'denied' }).where('id', '=', model.id).execute();
      continue;
    }
    await db.updateTable('agent_models').set({ status: 'retired', retired_at: now }).where('id', '=', model.id).execute();
    const serials = (await db.selectFrom('agent_credentials').select('serial').where('model_id', '=', model.id).execute()).map((c) => c.serial);
    if (serials.length === 0) continue;
    await db
      .updateTable('pki_certificates')
      .set({ status: 'revoked', revoked_at: now, revocation_reason: privilegeWithdrawn, revoked_by: `migration-0068:duplicate-model:${model.id}` })
      .where('serial', 'in', serials)
      .where('status', '=', 'valid')
      .execute();
    revoked = true;
  }
  if (kept.size < live.length) await bump(db, 'agents');
  if (revoked) await bump(db, 'pki_revocations');
}

/** A generation every node's cache of it watches (src/storage/generations.ts): nodes still running reload. */
async function bump(db: Kysely<Migrating>, name: string): Promise<void> {
  await db
    .insertInto('generations')
    .values({ name, value: 1 })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb('generations.value', '+', 1) })))
    .execute();
}
