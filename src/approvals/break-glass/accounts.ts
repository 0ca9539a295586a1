import type { Kysely, Transaction } from 'kysely';
import type { ClientMetadata } from '../../clients/metadata.ts';
import type { Context } from '../../context.ts';
import type { ResourceServer } from '../../resource-servers/definition.ts';
import type { Database } from '../../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../../storage/generations.ts';
import { join, type Validator } from '../../validation.ts';
import type { UserEntry } from '../../identity/users.ts';

/**
 * Named emergency accounts (issue 15 item 5, docs/recovery.md "Break-glass").
 *
 * An emergency account is a service client (declared under `clients` with the same id, its
 * credential — a private key or a certificate — kept sealed by the operators) that is disabled by
 * default: its client authentication fails at every endpoint unless one of its activations is in
 * force (./activations.ts). Why a client and not a person: the credential is a key that can sit in
 * a safe and be used by whoever is on call without sharing a person's password or passkey; every
 * token it gets is a client_credentials token whose `sub` is the account, so nothing it does can be
 * mistaken for a person's act; and the one gate (client authentication) covers the token,
 * introspection, revocation and PAR endpoints at once.
 *
 * The `break_glass` section of apply names each account and only what an activation may grant:
 * its scopes and its one audience, how long an activation lasts (default 1 h, 5 min to 8 h), and
 * optionally which custodians (usernames) may approve one (default: anyone with the
 * `break-glass-custodian` role). Entries are created or updated, never removed by omission (like
 * clients): an account stops being one only when its client is removed.
 */
export interface BreakGlassAccount {
  /** The emergency client's client_id. */
  name: string;
  scopes: string[];
  audience: string;
  activationSeconds: number;
  /** Usernames; undefined: anyone holding `break-glass-custodian`. */
  custodians?: string[];
}

export const defaultActivationSeconds = 3600;
export const minActivationSeconds = 300;
export const maxActivationSeconds = 8 * 3600;

const fields = ['name', 'scopes', 'audience', 'activation_seconds', 'custodians'] as const;

/** Reads one `break_glass[i]` entry (shape only; `planBreakGlass` checks it against the rest). */
export function readBreakGlassEntry(v: Validator, path: string, value: unknown): BreakGlassAccount | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, fields);
  const name = v.string(join(path, 'name'), o.name, { maxLength: 128, pattern: /^[A-Za-z0-9._:-]+$/, patternMessage: 'must be a client_id (letters, digits, . _ : -)' });
  const scopes = v.array(join(path, 'scopes'), o.scopes, (p, s) => v.string(p, s, { maxLength: 128, pattern: /^[\x21\x23-\x5b\x5d-\x7e]+$/, patternMessage: 'must be a scope token (RFC 6749 §3.3)' }), { nonEmpty: true, unique: true });
  const audience = v.string(join(path, 'audience'), o.audience, { maxLength: 512 });
  const activationSeconds = o.activation_seconds === undefined ? defaultActivationSeconds : v.integer(join(path, 'activation_seconds'), o.activation_seconds, { min: minActivationSeconds, max: maxActivationSeconds });
  let custodians: string[] | undefined;
  if (o.custodians !== undefined) {
    custodians = v.array(join(path, 'custodians'), o.custodians, (p, s) => v.string(p, s, { maxLength: 64 }), { unique: true });
    // Two distinct custodians approve each activation, and never the requester: fewer than two named can never approve.
    if (custodians && custodians.length < 2) v.fail(join(path, 'custodians'), 'must name at least two custodians (an activation needs two approvals)');
  }
  if (name === undefined || scopes === undefined || audience === undefined || activationSeconds === undefined || (o.custodians !== undefined && custodians === undefined)) return undefined;
  return { name, scopes, audience, activationSeconds, ...(custodians ? { custodians: custodians.map((c) => c.toLowerCase()) } : {}) };
}

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/**
 * The `break_glass` section, checked against the document and what is stored: each account's
 * client exists, is confidential, may use only client_credentials and is registered for no scope
 * beyond the account's; the audience is a resource server offering every scope; named custodians
 * exist.
 */
export async function planBreakGlass(
  ctx: Pick<Context, 'clients' | 'resourceServers' | 'storage'>,
  v: Validator,
  list: List,
  duplicates: Duplicates,
  document: { clients: ClientMetadata[]; resourceServers: ResourceServer[]; users: UserEntry[] },
): Promise<BreakGlassAccount[]> {
  const entries = list('break_glass', (p, x) => readBreakGlassEntry(v, p, x));
  duplicates(v, 'break_glass', entries.map((e) => [e.item.name, e.at]), 'name');
  if (entries.length === 0) return [];
  const servers = new Map<string, ResourceServer>();
  for (const server of await ctx.resourceServers.list()) servers.set(server.identifier, server);
  for (const server of document.resourceServers) servers.set(server.identifier, server);
  const usernames = new Set(document.users.map((u) => u.username.toLowerCase()));
  for (const { item, at } of entries) {
    const path = `break_glass[${at}]`;
    const client = document.clients.find((c) => c.client_id === item.name) ?? (await ctx.clients.get(item.name))?.metadata;
    if (!client) {
      v.fail(`${path}.name`, `no client "${item.name}" (declare the emergency account's client under clients)`);
    } else {
      for (const problem of emergencyClientProblems(client, item)) v.fail(problem.member === 'scope' ? `${path}.scopes` : `${path}.name`, problem.message);
    }
    const server = servers.get(item.audience);
    if (!server) v.fail(`${path}.audience`, `no resource server "${item.audience}"`);
    else item.scopes.forEach((scope, i) => {
      if (!server.scopes.includes(scope)) v.fail(`${path}.scopes[${i}]`, `"${scope}" is not offered by ${item.audience}`);
    });
    for (const [i, username] of (item.custodians ?? []).entries()) {
      if (usernames.has(username)) continue;
      const stored = await ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
      if (!stored) v.fail(`${path}.custodians[${i}]`, `no user "${username}"`);
    }
  }
  return entries.map((e) => e.item);
}

/** What an emergency client may not be, by the client member at fault. */
export interface EmergencyClientProblem {
  member: 'token_endpoint_auth_method' | 'grant_types' | 'scope';
  message: string;
}

/**
 * Why `client` cannot be the client of emergency account `account`: a public client, a grant type
 * other than client_credentials, a scope the account does not list. One rule for the account's
 * side (`planBreakGlass`) and the client's (`planEmergencyClients`, the RFC 7592 update): a
 * client written later can never do more than its account lets an activation grant.
 */
export function emergencyClientProblems(client: Pick<ClientMetadata, 'client_id' | 'token_endpoint_auth_method' | 'grant_types' | 'scope'>, account: Pick<BreakGlassAccount, 'scopes'>): EmergencyClientProblem[] {
  const problems: EmergencyClientProblem[] = [];
  const id = client.client_id;
  if (client.token_endpoint_auth_method === 'none') problems.push({ member: 'token_endpoint_auth_method', message: `client "${id}" is public; an emergency account authenticates with a key or a certificate` });
  if (client.grant_types.length !== 1 || client.grant_types[0] !== 'client_credentials') problems.push({ member: 'grant_types', message: `client "${id}" must have grant_types [client_credentials] and nothing else` });
  const beyond = (client.scope?.split(' ') ?? []).filter((s) => !account.scopes.includes(s));
  if (beyond.length > 0) problems.push({ member: 'scope', message: `client "${id}" is registered for ${beyond.join(', ')}, which the account does not list` });
  return problems;
}

/**
 * The other side of `planBreakGlass`: each client the document writes (apply, or the admin API's
 * PUT/PATCH, which apply one client) whose id is a STORED emergency account that the document does
 * not redeclare is checked against that account, at the client's own paths — else a later apply
 * or admin update could give the emergency client more grant types or scopes than its account.
 */
export async function planEmergencyClients(
  db: Kysely<Database>,
  v: Validator,
  clients: readonly { item: ClientMetadata; at: number }[],
  declared: readonly BreakGlassAccount[],
): Promise<void> {
  const redeclared = new Set(declared.map((a) => a.name));
  for (const { item, at } of clients) {
    if (redeclared.has(item.client_id)) continue;
    const account = await findBreakGlassAccount(db, item.client_id);
    if (!account) continue;
    for (const problem of emergencyClientProblems(item, account)) v.fail(`clients[${at}].${problem.member}`, `${problem.message} (it is the emergency account "${account.name}")`);
  }
}

/** Creates or updates the accounts in apply's transaction; each outcome for `config.applied`. */
export async function executeBreakGlass(trx: Transaction<Database>, now: number, accounts: readonly BreakGlassAccount[]): Promise<{ kind: 'break_glass_account'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const changes: { kind: 'break_glass_account'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  for (const account of accounts) {
    const row = { scopes: JSON.stringify(account.scopes), audience: account.audience, activation_seconds: account.activationSeconds, custodians: account.custodians ? JSON.stringify(account.custodians) : null };
    const existing = await trx.selectFrom('break_glass_accounts').selectAll().where('name', '=', account.name).executeTakeFirst();
    if (existing && existing.scopes === row.scopes && existing.audience === row.audience && Number(existing.activation_seconds) === row.activation_seconds && existing.custodians === row.custodians) {
      changes.push({ kind: 'break_glass_account', id: account.name, outcome: 'unchanged' });
      continue;
    }
    if (existing) await trx.updateTable('break_glass_accounts').set({ ...row, updated_at: now }).where('name', '=', account.name).execute();
    else await trx.insertInto('break_glass_accounts').values({ name: account.name, ...row, created_at: now, updated_at: now }).execute();
    changes.push({ kind: 'break_glass_account', id: account.name, outcome: existing ? 'updated' : 'created' });
  }
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, 'break_glass_accounts');
  return changes;
}

function accountFromRow(row: Database['break_glass_accounts']): BreakGlassAccount {
  return {
    name: row.name,
    scopes: JSON.parse(row.scopes) as string[],
    audience: row.audience,
    activationSeconds: Number(row.activation_seconds),
    ...(row.custodians !== null ? { custodians: JSON.parse(row.custodians) as string[] } : {}),
  };
}

/** The account with this name, read now (not cached). */
export async function findBreakGlassAccount(db: Kysely<Database> | Transaction<Database>, name: string): Promise<BreakGlassAccount | undefined> {
  if (name.length > 128) return undefined;
  const row = await db.selectFrom('break_glass_accounts').selectAll().where('name', '=', name).executeTakeFirst();
  return row && accountFromRow(row);
}

/** Every account, by name. */
export async function listBreakGlassAccounts(db: Kysely<Database>): Promise<BreakGlassAccount[]> {
  return (await db.selectFrom('break_glass_accounts').selectAll().orderBy('name').execute()).map(accountFromRow);
}

const caches = new WeakMap<Kysely<Database>, GenerationCache<Set<string>>>();

/**
 * The names of the emergency accounts, cached per database handle and reloaded when apply changes
 * them (in any process): client authentication asks this for every client, so an ordinary client
 * costs no query.
 */
export async function breakGlassAccountNames(ctx: Pick<Context, 'storage' | 'clock'>): Promise<Set<string>> {
  let cache = caches.get(ctx.storage.db);
  if (!cache) {
    const db = ctx.storage.db;
    cache = new GenerationCache(db, 'break_glass_accounts', async () => new Set((await db.selectFrom('break_glass_accounts').select('name').execute()).map((r) => r.name)), ctx.clock);
    caches.set(db, cache);
  }
  return cache.get();
}

/** Forgets the cached names (after this process applied a change). */
export function invalidateBreakGlassAccounts(ctx: Pick<Context, 'storage'>): void {
  caches.get(ctx.storage.db)?.invalidate();
}
