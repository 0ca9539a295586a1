import { createHash } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Database } from '../storage/schema.ts';

/**
 * What apply manages, read as plain records for apply's plan (src/lifecycle/plan.ts): one map per
 * kind, by the id a document names the entry with, of its stored fields. A plan reads this before
 * and after writing the document in a transaction it then rolls back, so the field-by-field
 * differences are exactly what applying would store.
 *
 * A secret is never read as itself: its field holds a marker that only says whether it changed
 * (`secretMarker`), so a plan can say "changed" and nothing more.
 */
export type ManagedState = Map<ManagedKind, Map<string, Record<string, unknown>>>;

/** The kinds whose fields a plan shows (others show their outcome only). */
export const managedKinds = ['client', 'resource_server', 'partner', 'user', 'agent', 'mandate', 'identity_provider'] as const;
export type ManagedKind = (typeof managedKinds)[number];

/** The name of a field whose value is a secret's marker: compared, never printed. */
export const secretField = (name: string): string => `${name} (secret)`;
/** The name of a field holding a person's personal data: compared, its values never printed. */
export const personalField = (name: string): string => `${name} (personal)`;

/**
 * A stand-in for a stored secret digest or sealed value: equal markers mean the same stored value.
 * The stored value itself never leaves this module, and the plan never shows the marker either.
 */
function secretMarker(value: string | null): string | null {
  return value === null ? null : createHash('sha256').update(value).digest('base64url');
}

/** Which entries to read, per kind: only those a plan names (a kind not named is not read). */
export type StateScope = Partial<Record<ManagedKind, ReadonlySet<string>>>;

/** Reads the entries `scope` names inside `trx` (every kind has its map, empty when not named). */
export async function readManagedState(trx: Transaction<Database>, scope: StateScope): Promise<ManagedState> {
  const state: ManagedState = new Map(managedKinds.map((kind) => [kind, new Map()]));
  // Up to a few hundred ids are read by id; more, and the whole table is read and filtered here.
  const ids = (kind: ManagedKind): string[] | undefined => {
    const named = scope[kind];
    return named && named.size > 0 && named.size <= 500 ? [...named] : undefined;
  };
  const wanted = (kind: ManagedKind) => (scope[kind]?.size ?? 0) > 0;
  const keep = <T>(kind: ManagedKind, rows: T[], id: (row: T) => string): T[] => rows.filter((row) => scope[kind]!.has(id(row)));
  if (wanted('client')) await readClients();
  if (wanted('resource_server')) await readServers();
  if (wanted('partner')) await readPartners();
  if (wanted('user')) await readUsers();
  if (wanted('agent')) await readAgents();
  if (wanted('mandate')) await readMandates();
  if (wanted('identity_provider')) await readProviders();
  return state;

  async function readClients() {
    const named = ids('client');
    const clients = keep('client', await trx.selectFrom('clients').select(['client_id', 'metadata', 'secret_hash', 'disabled_at']).$if(named !== undefined, (q) => q.where('client_id', 'in', named!)).execute(), (c) => c.client_id);
    state.set('client', new Map(clients.map((c) => [c.client_id, { ...parseObject(c.metadata), [secretField('client_secret')]: secretMarker(c.secret_hash), disabled: c.disabled_at !== null }])));
  }
  async function readServers() {
    const named = ids('resource_server');
    const servers = keep('resource_server', await trx.selectFrom('resource_servers').select(['identifier', 'definition', 'disabled_at']).$if(named !== undefined, (q) => q.where('identifier', 'in', named!)).execute(), (r) => r.identifier);
    state.set('resource_server', new Map(servers.map((r) => [r.identifier, { ...parseObject(r.definition), disabled: r.disabled_at !== null }])));
  }
  async function readPartners() {
    const named = ids('partner');
    const partners = keep('partner', await trx.selectFrom('partners').select(['id', 'definition', 'disabled_at']).$if(named !== undefined, (q) => q.where('id', 'in', named!)).execute(), (p) => p.id);
    state.set('partner', new Map(partners.map((p) => [p.id, { ...parseObject(p.definition), disabled: p.disabled_at !== null }])));
  }
  async function readUsers() {
    const named = ids('user');
    const users = keep('user', await trx.selectFrom('users').select(['username', 'name', 'email', 'desks', 'roles', 'attributes', 'status', 'password_hash']).$if(named !== undefined, (q) => q.where('username', 'in', named!)).execute(), (u) => u.username);
    state.set(
      'user',
      new Map(
        users.map((u) => [
          u.username,
          {
            [personalField('name')]: u.name,
            [personalField('email')]: u.email,
            desks: parse(u.desks),
            roles: parse(u.roles),
            [personalField('attributes')]: parse(u.attributes),
            status: u.status,
            [secretField('password')]: secretMarker(u.password_hash),
          },
        ]),
      ),
    );
  }
  async function readAgents() {
    const named = ids('agent');
    const agents = keep('agent', await trx.selectFrom('agents').selectAll().$if(named !== undefined, (q) => q.where('id', 'in', named!)).execute(), (a) => a.id);
    state.set(
      'agent',
      new Map(
        agents.map(({ id, updated_at: _u, ...row }) => [
          id,
          Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === 'string' && /^[[{]/.test(value) ? parse(value) : value])),
        ]),
      ),
    );
  }
  async function readMandates() {
    const named = ids('mandate');
    const mandates = keep('mandate', await trx
      .selectFrom('mandates')
      .innerJoin('mandate_versions', (join) => join.onRef('mandate_versions.mandate_id', '=', 'mandates.id').onRef('mandate_versions.version', '=', 'mandates.current_version'))
      .select([
        'mandates.id',
        'mandate_versions.version',
        'mandate_versions.status',
        'mandate_versions.grantor_kind',
        'mandate_versions.grantor_id',
        'mandate_versions.grantee_kind',
        'mandate_versions.grantee_id',
        'mandate_versions.scopes',
        'mandate_versions.constraints',
        'mandate_versions.legal_basis_reference',
        'mandate_versions.effective_from',
        'mandate_versions.effective_to',
      ])
      .$if(named !== undefined, (q) => q.where('mandates.id', 'in', named!))
      .execute(), (m) => m.id);
    state.set(
      'mandate',
      new Map(
        mandates.map((m) => [
          m.id,
          {
            version: Number(m.version),
            status: m.status,
            grantor: `${m.grantor_kind}:${m.grantor_id}`,
            grantee: `${m.grantee_kind}:${m.grantee_id}`,
            scopes: parse(m.scopes),
            constraints: parse(m.constraints),
            legal_basis_reference: m.legal_basis_reference,
            effective_from: Number(m.effective_from),
            effective_to: m.effective_to === null ? null : Number(m.effective_to),
          },
        ]),
      ),
    );
  }
  async function readProviders() {
    const named = ids('identity_provider');
    const providers = keep('identity_provider', await trx.selectFrom('identity_providers').select(['id', 'definition', 'secret_sealed', 'enabled']).$if(named !== undefined, (q) => q.where('id', 'in', named!)).execute(), (p) => p.id);
    state.set('identity_provider', new Map(providers.map((p) => [p.id, { ...parseObject(p.definition), [secretField('client_secret')]: secretMarker(p.secret_sealed), enabled: Number(p.enabled) === 1 }])));
  }
}

function parseObject(text: string): Record<string, unknown> {
  const value = parse(text);
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
