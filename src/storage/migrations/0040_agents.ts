import type { Kysely } from 'kysely';

/**
 * Algorithmic agents (src/agents, docs/agents.md): deployment pipelines and their attestation keys,
 * agent identities, model versions bound to them with their approval, single-use attestation
 * nonces, and which model version each attested certificate carries. src/agents/tables.ts says
 * what each column holds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('agent_pipelines')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('jwks', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('agents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull().unique())
    .addColumn('strategy', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('owner_lei', 'text', (c) => c.notNull())
    .addColumn('desk', 'text')
    .addColumn('venues', 'text', (c) => c.notNull())
    .addColumn('instrument_classes', 'text', (c) => c.notNull())
    .addColumn('notional_max', 'bigint')
    .addColumn('notional_currency', 'text')
    .addColumn('pipelines', 'text', (c) => c.notNull())
    .addColumn('certificate_profile', 'text', (c) => c.notNull())
    .addColumn('key_storage', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('agent_models')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('agent_id', 'text', (c) => c.notNull())
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('model_digest', 'text', (c) => c.notNull())
    .addColumn('image_digest', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('validated_by', 'text', (c) => c.notNull())
    .addColumn('validation_ref', 'text')
    .addColumn('approval_request', 'text', (c) => c.notNull())
    .addColumn('approved_by', 'text')
    .addColumn('approved_at', 'bigint')
    .addColumn('retire_previous', 'integer', (c) => c.notNull())
    .addColumn('retired_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('agent_models_agent').on('agent_models').columns(['agent_id', 'status']).execute();
  await db.schema
    .createTable('agent_nonces')
    .addColumn('nonce_hash', 'text', (c) => c.primaryKey())
    .addColumn('agent_id', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();
  await db.schema
    .createTable('agent_credentials')
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('agent_id', 'text', (c) => c.notNull())
    .addColumn('model_id', 'text', (c) => c.notNull())
    .addColumn('pipeline_id', 'text', (c) => c.notNull())
    .addColumn('attestation_jti', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('agent_credentials_model').on('agent_credentials').column('model_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['agent_credentials', 'agent_nonces', 'agent_models', 'agents', 'agent_pipelines']) await db.schema.dropTable(table).execute();
}
