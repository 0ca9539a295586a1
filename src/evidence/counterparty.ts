/**
 * Evidence for counterparties (issue 26 item 4; docs/evidence.md "Evidence for counterparties"): a
 * client that took part in a txn fetches, with its own credentials, the evidence bundle of the hops
 * it took part in and of the chain that led to them — not the whole trade, which is the operator's
 * compliance's to read (`audit:read`, src/audit/scope.ts).
 *
 * A hop is one token of the txn: its `token.issued` or `token.exchanged` (RFC 8693), named by its
 * `jti`; an exchange names its parent (the subject token's `jti`). A party takes part in a hop
 *
 * - as `client`: the hop's token was issued to one of its clients (for an exchange, the requesting client);
 * - as `actor`: the current actor of the token's `act` (RFC 8693 §4.1) is one of its clients, or a
 *   subject of a partner that speaks for it. Only the current actor: §4.1 makes the nested prior
 *   actors "informational only", and counting them would give every earlier hop's actor every hop
 *   after it;
 * - as `audience`: the token is for a resource server its firm runs (`owner_lei`): the clearing
 *   firm whose API took the settlement instruction, although no client of its own asked for a token;
 * - as `subject_token_client`: the hop exchanged a token issued to one of its clients;
 * - as `partner`: the hop exchanged a token of a partner (or took a partner's actor token) whose
 *   trust profile speaks for its firm (`legal_entities`).
 *
 * The party is the caller's firm when it has one (`owner_lei`: all its clients, the resource servers
 * it runs, the partners that speak for it), else the caller alone. Named in a refusal, a policy
 * question, an appended event or a fetch of this API, nobody takes part: only hops count.
 *
 * What the bundle holds: the hops the party took part in, every earlier hop they descend from (by
 * `parent_jti`: the chain that led to them, with the mandate version and the consent grant its
 * events name), and of the txn's other events those that are the party's own doing (its client is
 * the event's client or actor: the evidence its producers appended, its introspections, its
 * refusals), the revocations of the bundle's hops' tokens, the approvals a CIBA token of the chain was issued on
 * (verify-bundle checks them), and a lapse of a mandate version the chain used. Nothing else: later
 * hops of others, other branches of the trade, other parties' evidence, legal holds. Each included
 * event is the event as stored, proven by its own inclusion proof into the signed checkpoint: its
 * personal fields are the ciphertext the log holds (src/audit/personal-data.ts), never revealed,
 * and its subjects the local ids (random, no names or emails). An event with a personal field in
 * the clear (which the recorder never writes) is withheld rather than shown: fail closed.
 *
 * A party with a pairwise client (the caller, or any client of its firm: OIDC Core §8.1) never
 * sees a person's local id: its events name people by those ids, which pairwise clients are never
 * told (src/identity/pairwise.ts `holderMustNotRead`), and two firms comparing bundles could link a
 * person across them. An event cannot be redacted (its leaf is the hash of its exact bytes), so
 * for such a party every event naming a person is withheld whole and counted (`persons_withheld`),
 * and a hop so withheld breaks its chain there: nothing before it is given for it. Participation
 * still counts the withheld hops (a party is answered as one).
 */
import type { Context } from '../context.ts';
import { AuditKeys, auditOrigin } from '../audit/audit-key.ts';
import { BundleError, exportBundle, maxBundleEvents, type ExportResult } from '../audit/bundle.ts';
import { hopJti, parentJti, type CounterpartyRole, type CounterpartyStatement, type StatedHop } from '../audit/bundle-counterparty.ts';
import type { StoredAuditEvent } from '../audit/events.ts';
import { auditKeyCustody } from '../audit/lifecycle.ts';
import { personalFields } from '../audit/personal-data.ts';
import { maxPageSize, queryEvents, type QueriedEvent } from '../audit/query.ts';
import type { Client } from '../clients/store.ts';
import { resolveMasterKey } from '../keys/master-key.ts';
import { tsaTrustPems } from '../pki/tsa.ts';

/** Who asks, and what counts as theirs. */
export interface CounterpartyParty {
  /** The client that asks, with its own credentials. */
  client: string;
  /** Its firm (`owner_lei`); absent for a client of no firm, which is a party through itself only. */
  lei?: string;
  /** The party's clients: the caller, and every client of its firm. */
  clients: ReadonlySet<string>;
  /** Of the txn's audiences, those of resource servers its firm runs. */
  audiences: ReadonlySet<string>;
  /** Of the partner issuers the txn names, those whose profile speaks for its firm. */
  partnerIssuers: ReadonlySet<string>;
  /**
   * Set when the caller, or any client of its firm, is pairwise: then every event naming a person is
   * withheld. `clients`: the ids of every registered client — the only names that are not a person.
   */
  pairwise?: { clients: ReadonlySet<string> };
}

/** What the party receives of a txn's events. */
export interface CounterpartySelection {
  /** Ids of the events the bundle holds. */
  include: ReadonlySet<string>;
  /** The included hops, in log order: those taken part in (as what) and the chain before them. */
  hops: StatedHop[];
  /** Whether the party took part in any hop (shown or withheld for naming a person): else it gets nothing. */
  tookPart: boolean;
  /** For a pairwise party: how many events it would have been given that are withheld for naming a person. */
  personsWithheld?: number;
}

/** A fetch refused for the txn: no part in it, or nothing filed under it — the same answer to the caller. */
export class CounterpartyRefusal extends Error {
  override name = 'CounterpartyRefusal';
  readonly reason: 'txn_not_party' | 'txn_unknown';
  constructor(reason: 'txn_not_party' | 'txn_unknown') {
    super('no evidence of yours is filed under this txn');
    this.reason = reason;
  }
}

/** `sub (iss)`: how token.exchanged names a partner's actor (src/grants/token-exchange.ts actorChain). */
const partnerActor = /^(.*) \(([^()]*)\)$/;

function currentActor(event: StoredAuditEvent): { sub: string; iss?: string } | undefined {
  const chain = event.details?.act_chain;
  const first = Array.isArray(chain) ? chain[0] : undefined;
  if (typeof first !== 'string') return undefined;
  const partner = partnerActor.exec(first);
  return partner ? { sub: partner[1]!, iss: partner[2]! } : { sub: first };
}

/** The issuers other than ours a hop names: its subject token's, its actor token's, its current actor's. */
function foreignIssuers(event: StoredAuditEvent, ourIssuer: string): string[] {
  const named = [event.details?.parent_issuer, event.details?.actor_issuer, currentActor(event)?.iss];
  return named.filter((iss): iss is string => typeof iss === 'string' && iss !== ourIssuer);
}

/**
 * The party of a caller, resolved against a txn's events: its firm's clients (from the clients'
 * cache), and of what the txn's hops name only, the resource servers its firm runs (a disabled one
 * counts: it took the token when in service) and the partners that speak for it (registered ones).
 */
export async function partyOf(ctx: Pick<Context, 'clients' | 'resourceServers' | 'partners' | 'config'>, caller: Client, events: readonly StoredAuditEvent[]): Promise<CounterpartyParty> {
  const client = caller.metadata.client_id;
  const lei = caller.metadata.owner_lei;
  const clients = new Set([client]);
  const audiences = new Set<string>();
  const partnerIssuers = new Set<string>();
  const registered = await ctx.clients.list();
  // A disabled client of the firm counts: the people it was told of were told pairwise.
  let pairwise = caller.metadata.subject_type === 'pairwise';
  if (lei !== undefined) {
    for (const c of registered) {
      if (c.metadata.owner_lei !== lei) continue;
      clients.add(c.metadata.client_id);
      if (c.metadata.subject_type === 'pairwise') pairwise = true;
    }
    const hops = events.filter((e) => hopJti(e) !== undefined);
    for (const audience of new Set(hops.flatMap((e) => (typeof e.audience === 'string' ? [e.audience] : [])))) {
      if ((await ctx.resourceServers.getStored(audience))?.server.owner_lei === lei) audiences.add(audience);
    }
    for (const issuer of new Set(hops.flatMap((e) => foreignIssuers(e, ctx.config.issuer)))) {
      if ((await ctx.partners.byIssuer(issuer))?.legal_entities?.includes(lei)) partnerIssuers.add(issuer);
    }
  }
  return {
    client,
    ...(lei !== undefined ? { lei } : {}),
    clients,
    audiences,
    partnerIssuers,
    ...(pairwise ? { pairwise: { clients: new Set(registered.map((c) => c.metadata.client_id)) } } : {}),
  };
}

/** How the party takes part in one hop (empty: it does not). */
export function rolesIn(hop: StoredAuditEvent, party: CounterpartyParty, byJti: ReadonlyMap<string, StoredAuditEvent>): CounterpartyRole[] {
  const roles: CounterpartyRole[] = [];
  const isOurs = (client: unknown) => typeof client === 'string' && party.clients.has(client);
  if (isOurs(hop.client)) roles.push('client');
  const actor = currentActor(hop);
  if (actor && actor.sub !== hop.client && (actor.iss === undefined ? isOurs(actor.sub) : party.partnerIssuers.has(actor.iss))) roles.push('actor');
  if (typeof hop.audience === 'string' && party.audiences.has(hop.audience)) roles.push('audience');
  const parent = parentJti(hop);
  if (parent !== undefined && isOurs(byJti.get(parent)?.client)) roles.push('subject_token_client');
  const issuers = [hop.details?.parent_issuer, hop.details?.actor_issuer];
  if (hop.type === 'token.exchanged' && issuers.some((iss) => typeof iss === 'string' && party.partnerIssuers.has(iss))) roles.push('partner');
  return roles;
}

/** An event holding a personal field in the clear (the recorder seals them: src/audit/personal-data.ts). */
function clearPersonalField(event: StoredAuditEvent): boolean {
  const details = event.details ?? {};
  return Object.keys(personalFields).some((field) => details[field] !== undefined);
}

/**
 * Whether an event names a person, for a pairwise party: its subject or actor, an actor of its
 * `act` chain, an approver of a CIBA token, a region crossing's local subject. A name that is not
 * a registered client's id counts as a person — a local id, a partner's subject, a client since
 * removed: fail closed.
 */
export function namesPerson(event: StoredAuditEvent, clients: ReadonlySet<string>): boolean {
  const person = (name: unknown) => name !== undefined && !(typeof name === 'string' && clients.has(name));
  if (person(event.subject) || person(event.actor)) return true;
  const details = event.details ?? {};
  const chain = details.act_chain;
  if (chain !== undefined && (!Array.isArray(chain) || chain.some(person))) return true;
  const approvals = details.evidence_digests;
  if (approvals !== undefined && (!Array.isArray(approvals) || approvals.some((a) => person((a as { sub?: unknown } | null)?.sub)))) return true;
  return details.region_crossing !== undefined || details.origin_person !== undefined;
}

/** What the party receives of a txn's events (docs/evidence.md "Evidence for counterparties"). Pure. */
export function selectForCounterparty(events: readonly StoredAuditEvent[], party: CounterpartyParty): CounterpartySelection {
  const selection = select(events, party);
  if (party.pairwise === undefined) return selection;
  // What naming people takes from it: the events a party without pairwise clients would be given, less these.
  const { pairwise: _, ...unrestricted } = party;
  const whole = select(events, unrestricted);
  return { ...selection, personsWithheld: [...whole.include].filter((id) => !selection.include.has(id)).length };
}

function select(events: readonly StoredAuditEvent[], party: CounterpartyParty): CounterpartySelection {
  // OIDC Core §8.1: a pairwise party is never told a person's local id (see the module's comment).
  const shown = (event: StoredAuditEvent) => party.pairwise === undefined || !namesPerson(event, party.pairwise.clients);
  const byJti = new Map<string, StoredAuditEvent>();
  for (const event of events) {
    const jti = hopJti(event);
    // A hop that cannot be shown is no hop of the bundle: neither it nor a chain for it.
    if (jti !== undefined && !byJti.has(jti) && !clearPersonalField(event)) byJti.set(jti, event);
  }
  const own = new Map<string, CounterpartyRole[]>();
  for (const [jti, hop] of byJti) {
    const roles = rolesIn(hop, party, byJti);
    if (roles.length > 0) own.set(jti, roles);
  }
  // The chain: every earlier hop the party's shown hops descend from, by their subject tokens, up
  // to a hop that is withheld (verify-bundle walks the chain within the bundle: it ends there).
  const shownOwn = [...own.keys()].filter((jti) => shown(byJti.get(jti)!));
  const chain = new Set<string>();
  for (const jti of shownOwn) {
    for (let at = parentJti(byJti.get(jti)!); at !== undefined && byJti.has(at) && shown(byJti.get(at)!) && !own.has(at) && !chain.has(at); at = parentJti(byJti.get(at)!)) chain.add(at);
  }
  const hopIds = new Set([...shownOwn, ...chain].map((jti) => byJti.get(jti)!.id));
  const included = events.filter((e) => hopIds.has(e.id));
  const mandates = new Set(included.flatMap((e) => (e.mandate ? [`${e.mandate.id}\n${e.mandate.v}`] : [])));
  const approvals = new Set(included.flatMap((e) => approvalsOf(e)));
  const jtis = new Set([...shownOwn, ...chain]);
  const isOurs = (value: unknown) => typeof value === 'string' && party.clients.has(value);
  const include = new Set<string>();
  for (const event of events) {
    const jti = event.details?.jti;
    const wanted =
      hopIds.has(event.id) ||
      (hopJti(event) === undefined &&
        (isOurs(event.client) ||
          isOurs(event.actor) ||
          (event.type === 'token.revoked' && typeof jti === 'string' && jtis.has(jti)) ||
          (event.type === 'approval.given' && approvals.has(approvalKey(event.actor, event.details?.role, event.details?.evidence_digest))) ||
          (event.type === 'mandate.lapsed_in_flight' && event.mandate !== undefined && mandates.has(`${event.mandate.id}\n${event.mandate.v}`))));
    if (wanted && !clearPersonalField(event) && shown(event)) include.add(event.id);
  }
  const hops: StatedHop[] = [...byJti]
    .filter(([jti, hop]) => jtis.has(jti) && include.has(hop.id))
    .map(([jti]) => (own.has(jti) ? { jti, part: 'took_part' as const, as: own.get(jti)! } : { jti, part: 'chain' as const }));
  return { include, hops, tookPart: own.size > 0 };
}

/** The approvals a CIBA token was issued on (`details.evidence_digests`: src/audit/bundle-approvals.ts). */
function approvalsOf(event: StoredAuditEvent): string[] {
  const listed = event.details?.evidence_digests;
  if (!Array.isArray(listed)) return [];
  return listed.map((entry) => {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    return approvalKey(e.sub, e.role, e.evidence_digest);
  });
}

function approvalKey(sub: unknown, role: unknown, digest: unknown): string {
  return JSON.stringify([sub ?? null, role ?? null, digest ?? null]);
}

/**
 * The party's hops are recorded, and not sealed yet (the sealer runs every 100 ms on SQLite,
 * 500 ms on PostgreSQL): nothing of its part can be proven yet. Only a party hears it; a
 * bystander's answer does not change.
 */
export class CounterpartyNotSealed extends Error {
  override name = 'CounterpartyNotSealed';
  constructor() {
    super('the evidence of your part in this txn is not sealed yet; retry in a second');
  }
}

/** Every event filed under a txn, sealed (with its leaf index) or not (at most a bundle's worth). */
async function eventsOf(ctx: Pick<Context, 'storage'>, txn: string): Promise<QueriedEvent[]> {
  const events: QueriedEvent[] = [];
  for (let after: string | undefined, first = true; first || after; first = false) {
    const page = await queryEvents(ctx.storage.db, { txn }, { limit: maxPageSize, ...(after ? { after } : {}) });
    events.push(...page.events);
    if (events.length > maxBundleEvents) throw new BundleError(`more than ${maxBundleEvents} events are filed under this txn`);
    after = page.next;
  }
  return events;
}

export interface CounterpartyExport {
  result: ExportResult;
  statement: CounterpartyStatement;
  /** Events of the party's selection not sealed yet (or leading only to such): a later fetch holds them. */
  pending: number;
}

/**
 * The signed bundle of `txn` for `caller` (a client in service), proven into the latest checkpoint
 * like every bundle (src/audit/bundle.ts) and saying what it holds and withholds
 * (src/audit/bundle-counterparty.ts). Throws CounterpartyRefusal when the caller's party took part
 * in no hop of the txn (or nothing is filed under it), CounterpartyNotSealed when none of its hops
 * is sealed yet, BundleError when no bundle can be made.
 *
 * Participation is read from every event of the txn, the bundle's selection from the sealed ones
 * only (a prefix of the log: a hop's parents are sealed before it), so the bundle is whole as of
 * its checkpoint: no chain hop whose own hop is still unsealed, which verify-bundle would refuse.
 */
export async function exportForCounterparty(ctx: Context, caller: Client, txn: string): Promise<CounterpartyExport> {
  const read = await eventsOf(ctx, txn);
  const events = read.map(({ event }) => event);
  const party = await partyOf(ctx, caller, events);
  const whole = selectForCounterparty(events, party);
  if (!whole.tookPart) {
    const started = events.length > 0 || (await ctx.storage.db.selectFrom('transactions').select('txn').where('txn', '=', txn).executeTakeFirst()) !== undefined;
    throw new CounterpartyRefusal(started ? 'txn_not_party' : 'txn_unknown');
  }
  // A leaf index is written with the checkpoint that covers it (src/audit/sealer.ts): sealed.
  const selection = selectForCounterparty(read.filter(({ leafIndex }) => leafIndex !== null).map(({ event }) => event), party);
  if (!selection.tookPart) throw new CounterpartyNotSealed();
  const pending = [...whole.include].filter((id) => !selection.include.has(id)).length;
  const db = ctx.storage.db;
  const auditKeys = new AuditKeys(db, resolveMasterKey(ctx.config).key, ctx.clock, auditKeyCustody(ctx));
  const key = await auditKeys.signingKey(auditOrigin(ctx.config.issuer));
  const tsaTrust = ctx.config.tsa ? tsaTrustPems(ctx.config.tsa.trustFile) : [];
  let statement: CounterpartyStatement | undefined;
  const result = await exportBundle(db, {
    query: { txn },
    key,
    keyFor: (keyId) => auditKeys.signingKeyFor(keyId),
    jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to),
    now: ctx.clock.now(),
    tsaTrust,
    counterparty: {
      // An event recorded since the selection was read is withheld: it was not looked at.
      include: (event) => selection.include.has(event.id),
      statement: (bundled, withheld) => {
        // The hops the bundle holds: one not sealed yet is left for a later fetch.
        const held = new Set(bundled.flatMap(({ event }) => hopJti(event) ?? []));
        // The export withholds what the selection left out; the party's own pending events are not others'.
        statement = {
          client: party.client,
          ...(party.lei !== undefined ? { lei: party.lei } : {}),
          hops: selection.hops.filter((hop) => held.has(hop.jti)),
          withheld: Math.max(0, withheld - pending),
          ...(selection.personsWithheld !== undefined ? { persons_withheld: selection.personsWithheld } : {}),
        };
        return statement;
      },
    },
  });
  return { result, statement: statement!, pending };
}
