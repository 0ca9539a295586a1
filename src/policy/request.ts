import type { CedarValueJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { Context } from '../context.ts';
import type { EntitySnapshot } from '../entities/directory.ts';
import { permittedRegions } from './residency.ts';
import { findUser } from '../identity/users.ts';
import type { CedarEntity, CedarRequest, EntityUid } from './engine.ts';
import type { PrincipalType, ResourceType } from './schema.ts';
import { readsContext, type CompiledPolicySet } from './engine.ts';
import { withDerivedAuthentication } from './step-up.ts';
import { isKnown, knownUses, type Use } from './first-use.ts';
import { deskClock } from './desk-time.ts';
import type { User } from '../identity/users.ts';
import type { RiskContext } from '../risk/assessment.ts';
import type { KycLookup } from '../risk/kyc/store.ts';

/** The mandate a request is made under, with its constraints (the Mandate type of the schema). */
export interface MandateContext {
  id: string;
  version: number;
  scopes?: string[];
  instrument_classes?: string[];
  venues?: string[];
  regions?: string[];
  max_notional?: number;
  currency?: string;
}

/** What the caller knows about the request (the RequestContext type of the schema, less `time`). */
export interface DecisionContext {
  region?: string;
  acr?: string;
  /** When the person authenticated (epoch seconds): Clearance derives `auth_age` from it. */
  auth_time?: number;
  /** Set by Clearance only (first-use.ts), at issuance in one read for every entry. */
  new_instrument_class?: boolean;
  new_settlement_account?: boolean;
  /**
   * Set by Clearance only, at issuance: the token carries the person's passkey approval of exactly
   * the request's order and settlement_instruction entries (src/approvals).
   */
  approved?: boolean;
  /** Set by Clearance only, at issuance: how many second persons approved the request (four-eyes). */
  approvals?: number;
  kyc_status?: string;
  suitability?: string[];
  /** Set by Clearance only: the risk engine's assessment of the request (src/risk). */
  risk?: RiskContext;
  notional?: number;
  currency?: string;
  instrument_class?: string;
  venue?: string;
  mandate?: MandateContext;
  /** Set by Clearance only, at issuance: the algorithmic agent and its approved model version (src/agents/authority.ts). */
  agent?: AgentContext;
  /** Set by Clearance only, at issuance to a person: whether they signed in from a managed device, and which. */
  managed_device?: boolean;
  device_id?: string;
  /** Set by Clearance only, at issuance to a person: who authenticated them (src/federation/upstream) — Clearance, or an upstream identity provider. */
  assurance?: { source: string; federated: boolean };
  /** A `transfer` entry's fields (src/transfers/detail.ts `transferFacts`): set at issuance, or sent by a resource server to the AuthZEN endpoint. */
  transfer_type?: string;
  asset?: string;
  amount?: number;
  chain?: string;
  destination_kind?: string;
  destination?: string;
  purpose?: string;
  travel_rule_present?: boolean;
}

/** The schema's `Agent` context record: who the agent is and the model version that trades. */
export interface AgentContext {
  id: string;
  strategy: string;
  environment: string;
  model_version: string;
  model_digest: string;
  model_approved: boolean;
  venues: string[];
  instrument_classes: string[];
  max_notional?: number;
  envelope_currency?: string;
}

export const decisionContextFields = [
  'region', 'acr', 'auth_time', 'kyc_status', 'suitability', 'notional', 'currency', 'instrument_class', 'venue', 'mandate',
  // A transfer's (src/transfers/detail.ts transferFacts): set at issuance, sent by a resource server at execution.
  'transfer_type', 'asset', 'amount', 'chain', 'destination_kind', 'destination', 'purpose', 'travel_rule_present',
] as const;

/**
 * Context attributes only Clearance sets: derived from the authentication (`acr_levels`,
 * `auth_age`), the desk's clock (`local_time`, `local_weekday`), the first-use history
 * (`new_instrument_class`, `new_settlement_account`), the person's approval (`approved`), second persons' approvals (`approvals`), the
 * risk engine's assessment (`risk`, src/risk) and the agent's model version (`agent`, src/agents). A caller never sends them.
 */
export const derivedContextFields = ['acr_levels', 'auth_age', 'local_time', 'local_weekday', 'new_instrument_class', 'new_settlement_account', 'approved', 'approvals', 'approval_kind', 'risk', 'agent', 'managed_device', 'device_id', 'assurance'] as const;

/**
 * A decision request in Clearance's terms. Principal and resource are named by id; their
 * attributes come from Clearance's own records (users, clients, the entity model, resource
 * servers), never from the caller — except an instrument's, which Clearance does not keep.
 */
export interface DecisionRequest {
  /** `User` by user id (the `sub` of their tokens); `Client` or `Agent` by client_id. */
  principal: { type: PrincipalType; id: string };
  /** A scope such as `order:create`. */
  action: string;
  /** `ResourceServer` by identifier, `Account` by id, `Instrument` by id with its class (and venue). */
  resource: { type: ResourceType; id: string; instrument_class?: string; venue?: string };
  context?: DecisionContext;
  /** The trade's txn the caller (the guard, from the token) sent in the AuthZEN context: the decision is filed under it. Not a policy attribute. */
  txn?: string;
  /**
   * The mandate the order runs under, as the AuthZEN context names it (the token's `mandate`):
   * Clearance loads the version's terms into `context.mandate` and holds the order to them
   * (src/mandates/order-check.ts). A caller never states the terms.
   */
  mandate?: MandateRequest;
}

/** A mandate named by id, and the version a token carries (without one: the current version). */
export interface MandateRequest {
  id: string;
  v?: number;
}

export type Resolution = { ok: true; request: CedarRequest } | { ok: false; error: string };

type Stores = Pick<Context, 'storage' | 'clients' | 'resourceServers' | 'entities' | 'clock' | 'risk'>;

/**
 * What entities are built from: the entity model and the KYC records of the people in the
 * request and of every legal entity (src/risk/kyc: statuses as of now, a `verified` past its
 * review date already `expired`).
 */
export interface EntityRecords {
  snapshot: EntitySnapshot;
  kyc: KycLookup;
}

const ref = (type: string, id: string): CedarValueJson => ({ __entity: { type, id } });

/** `Type::"id"`, as Cedar writes an entity and as audit events name one. */
export function uidText(uid: EntityUid): string {
  return `${uid.type}::${JSON.stringify(uid.id)}`;
}

/** How a resolution reads a person by id: `findUser`, or a batch's lookup that reads each person once (decide.ts `Resolutions`). */
export type PersonLookup = (ctx: Pick<Context, 'storage'>, id: string) => Promise<User | undefined>;

/**
 * Builds the Cedar request: the principal, resource and the entities they are members of (desks,
 * legal entities), with attributes from Clearance's records; the context with `time` (Clearance's
 * clock, epoch seconds) and, for a person, their own KYC status (their KYC record, src/risk/kyc)
 * and suitability (their records win over what the caller sent). A principal or resource
 * Clearance does not know is not resolved (the decision is a deny).
 */
export async function resolveRequest(ctx: Stores, request: DecisionRequest, nowSeconds: number, set?: CompiledPolicySet, lookUp: PersonLookup = findUser): Promise<Resolution> {
  const snapshot = await ctx.entities.snapshot();
  // Cached per node: a known person costs no round trip (src/risk/kyc/store.ts).
  const records: EntityRecords = { snapshot, kyc: await ctx.risk.kyc.lookup(request.principal.type === 'User' ? [request.principal.id] : []) };
  const entities = new Map<string, CedarEntity>();
  const add = (entity: CedarEntity) => entities.set(uidText(entity.uid), entity);
  const given = { ...(request.context as Record<string, CedarValueJson> | undefined) };
  // What only Clearance sets is never taken from the caller. Deleted only where present: a delete
  // costs a call into the engine even for a member that is not there, on every decision.
  for (const field of derivedContextFields) if (Object.hasOwn(given, field)) delete given[field];
  if (request.context?.new_instrument_class !== undefined) given.new_instrument_class = request.context.new_instrument_class;
  if (request.context?.new_settlement_account !== undefined) given.new_settlement_account = request.context.new_settlement_account;
  // Issuance's own (the AuthZEN API refuses the attribute from a caller: authzen.ts reads only decisionContextFields).
  if (request.context?.approved !== undefined) given.approved = request.context.approved;
  if (request.context?.approvals !== undefined) given.approvals = request.context.approvals;
  // The risk engine's assessment (src/risk): set by the issuance path and the AuthZEN endpoint, never a caller.
  if (request.context?.risk !== undefined) given.risk = request.context.risk as unknown as CedarValueJson;
  if (request.context?.agent !== undefined) given.agent = request.context.agent as unknown as CedarValueJson;
  if (request.context?.managed_device !== undefined) given.managed_device = request.context.managed_device;
  if (request.context?.device_id !== undefined) given.device_id = request.context.device_id;
  if (request.context?.assurance !== undefined) given.assurance = request.context.assurance as unknown as CedarValueJson;
  given.time = nowSeconds;
  const context: Record<string, CedarValueJson> = withDerivedAuthentication(given);

  let principal: EntityUid;
  if (request.principal.type === 'User') {
    const user = await lookUp(ctx, request.principal.id);
    if (!user) return { ok: false, error: `no user ${request.principal.id}` };
    principal = addUser(add, records, user);
    context.kyc_status = kycOf(records, user);
    context.suitability = suitabilityOf(user);
    if (set) await addPersonContext(ctx, set, context, user, snapshot, request.resource);
  } else {
    const client = await ctx.clients.get(request.principal.id);
    if (!client) return { ok: false, error: `no client ${request.principal.id}` };
    const m = client.metadata;
    // The registered kind decides the type: a trading algorithm is always an Agent.
    principal = { type: m.kind === 'agent' ? 'Agent' : 'Client', id: m.client_id };
    const owner = m.owner_lei ? snapshot.legalEntities.get(m.owner_lei) : undefined;
    if (m.owner_lei) addLegalEntity(add, records, m.owner_lei);
    add({
      uid: principal,
      attrs: { kind: m.kind, ...(m.owner_lei ? { owner_lei: m.owner_lei } : {}), ...(owner ? { jurisdiction: owner.jurisdiction } : {}) },
      parents: m.owner_lei ? [{ type: 'LegalEntity', id: m.owner_lei }] : [],
    });
  }

  let resource: EntityUid;
  const r = request.resource;
  if (r.type === 'ResourceServer') {
    const server = await ctx.resourceServers.get(r.id);
    if (!server) return { ok: false, error: `no resource server ${r.id}` };
    resource = { type: 'ResourceServer', id: server.identifier };
    add({ uid: resource, attrs: { identifier: server.identifier, scopes: server.scopes, ...(server.region !== undefined ? { region: server.region } : {}) }, parents: [] });
  } else if (r.type === 'Account') {
    const known = snapshot.accounts.get(r.id);
    if (!known) return { ok: false, error: `no account ${r.id}` };
    const { account, lei } = known;
    const entity = snapshot.legalEntities.get(lei)!;
    resource = { type: 'Account', id: account.id };
    addLegalEntity(add, records, lei);
    if (account.desk) addDesk(add, records, account.desk);
    add({
      uid: resource,
      attrs: {
        legal_entity: ref('LegalEntity', lei),
        jurisdiction: entity.jurisdiction,
        home_region: entity.home_region,
        region: account.region,
        ...(account.desk ? { desk: ref('Desk', account.desk) } : {}),
      },
      parents: [...(account.desk ? [{ type: 'Desk', id: account.desk }] : []), { type: 'LegalEntity', id: lei }],
    });
  } else {
    const instrumentClass = r.instrument_class ?? request.context?.instrument_class;
    if (instrumentClass === undefined) return { ok: false, error: `instrument ${r.id} has no instrument_class` };
    const known = snapshot.instrumentClasses.get(instrumentClass);
    if (!known) return { ok: false, error: `"${instrumentClass}" is not a declared instrument class` };
    const venue = r.venue ?? request.context?.venue;
    resource = { type: 'Instrument', id: r.id };
    add({ uid: resource, attrs: { instrument_class: instrumentClass, complex: known.complex, ...(venue !== undefined ? { venue } : {}) }, parents: [] });
  }
  return { ok: true, request: { principal, action: request.action, resource, context, entities: [...entities.values()] } };
}

/**
 * Adds a person as a Cedar `User` (and their desks, and those desks' firms) with attributes from
 * their records: status, KYC (their KYC record, in `records.kyc`), suitability, their desks'
 * product classes and jurisdictions, roles, the desks they supervise (declared desks only) and
 * their approval limit. Returns their uid.
 */
export function addUser(add: (e: CedarEntity) => void, records: EntityRecords, user: User): EntityUid {
  const { snapshot } = records;
  const uid: EntityUid = { type: 'User', id: user.id };
  const productClasses = new Set<string>();
  const jurisdictions = new Set<string>();
  for (const desk of user.desks) {
    const known = snapshot.desks.get(desk);
    if (!known) continue;
    known.desk.product_classes.forEach((c) => productClasses.add(c));
    jurisdictions.add(snapshot.legalEntities.get(known.lei)!.jurisdiction);
    addDesk(add, records, desk);
  }
  const category = user.attributes.client_category;
  const supervises = Array.isArray(user.attributes.supervises) ? user.attributes.supervises.filter((d) => snapshot.desks.has(d)) : [];
  const limit = user.attributes.approval_limit;
  add({
    uid,
    attrs: {
      status: user.status,
      kyc_status: kycOf(records, user),
      suitability: suitabilityOf(user),
      product_classes: [...productClasses].sort(),
      jurisdictions: [...jurisdictions].sort(),
      ...(typeof category === 'string' ? { client_category: category } : {}),
      roles: [...user.roles].sort(),
      ...(supervises.length > 0 ? { supervises: supervises.map((d) => ref('Desk', d)) } : {}),
      ...(typeof limit === 'number' && Number.isSafeInteger(limit) && limit >= 0 ? { approval_limit: limit } : {}),
    },
    parents: user.desks.map((d) => ({ type: 'Desk', id: d })),
  });
  return uid;
}

/** A person's KYC status: their KYC record's, `none` when they have none. */
function kycOf(records: EntityRecords, user: User): string {
  return records.kyc.user(user.id) ?? 'none';
}

function suitabilityOf(user: User): string[] {
  return Array.isArray(user.attributes.suitability) ? user.attributes.suitability : [];
}

/**
 * A person's context that Clearance computes when the set reads it: the local time at the desk
 * the request is about (desk-time.ts), and whether the instrument class or settlement account is
 * new for them (first-use.ts: one read, unless the caller — issuance — already knew).
 */
async function addPersonContext(
  ctx: Stores,
  set: CompiledPolicySet,
  context: Record<string, CedarValueJson>,
  user: User,
  snapshot: EntitySnapshot,
  resource: DecisionRequest['resource'],
): Promise<void> {
  if (readsContext(set, 'local_time') || readsContext(set, 'local_weekday')) {
    const instrumentClass = resource.type === 'Instrument' ? (resource.instrument_class ?? (context.instrument_class as string | undefined)) : undefined;
    const accountDesk = resource.type === 'Account' ? snapshot.accounts.get(resource.id)?.account.desk : undefined;
    const clock = deskClock(snapshot, user.desks, { instrumentClass, accountDesk }, nowMs(context));
    if (clock) {
      context.local_time = clock.minutes;
      context.local_weekday = clock.weekday;
    }
  }
  const uses: Use[] = [];
  const instrumentClass = resource.type === 'Instrument' ? (resource.instrument_class ?? (context.instrument_class as string | undefined)) : undefined;
  if (instrumentClass !== undefined && context.new_instrument_class === undefined && readsContext(set, 'new_instrument_class')) uses.push({ kind: 'instrument_class', value: instrumentClass });
  if (resource.type === 'Account' && context.new_settlement_account === undefined && readsContext(set, 'new_settlement_account')) uses.push({ kind: 'settlement_account', value: resource.id });
  if (uses.length === 0) return;
  const known = await knownUses(ctx, user.id, uses);
  for (const use of uses) context[use.kind === 'instrument_class' ? 'new_instrument_class' : 'new_settlement_account'] = !isKnown(known, use);
}

function nowMs(context: Record<string, CedarValueJson>): number {
  return (typeof context.time === 'number' ? context.time : 0) * 1000;
}

function addLegalEntity(add: (e: CedarEntity) => void, records: EntityRecords, lei: string): void {
  const entity = records.snapshot.legalEntities.get(lei);
  if (!entity) return;
  // Its KYC record's status, when it has one (src/risk/kyc).
  const kyc = records.kyc.legalEntity(lei);
  add({
    uid: { type: 'LegalEntity', id: lei },
    attrs: { lei, jurisdiction: entity.jurisdiction, home_region: entity.home_region, data_regions: permittedRegions(entity), roles: entity.roles, ...(kyc !== undefined ? { kyc_status: kyc } : {}) },
    parents: [],
  });
}

function addDesk(add: (e: CedarEntity) => void, records: EntityRecords, id: string): void {
  const { snapshot } = records;
  const known = snapshot.desks.get(id);
  if (!known) return;
  const entity = snapshot.legalEntities.get(known.lei)!;
  addLegalEntity(add, records, known.lei);
  add({
    uid: { type: 'Desk', id },
    attrs: {
      legal_entity: ref('LegalEntity', known.lei),
      jurisdiction: entity.jurisdiction,
      product_classes: known.desk.product_classes,
      ...(known.desk.time_zone !== undefined ? { time_zone: known.desk.time_zone } : {}),
    },
    parents: [{ type: 'LegalEntity', id: known.lei }],
  });
}
