import type { StoredAuditEvent } from './events.ts';

/**
 * What a counterparty's bundle says about itself (docs/evidence.md "Evidence for counterparties";
 * made by src/evidence/counterparty.ts), signed with the rest of the bundle, and checked offline by
 * verify-bundle. A counterparty's bundle holds some of a txn's events, each with its own inclusion
 * proof into the signed checkpoint like any bundle's; this statement says for whom it was cut,
 * which hops it holds and why, and how many events of the txn it leaves out — their number, never
 * their content.
 */
export interface CounterpartyStatement {
  /** The client that fetched the bundle with its own credentials. */
  client: string;
  /** The firm it speaks for (its `owner_lei`), whose clients, resource servers and partners count as its own. */
  lei?: string;
  /** The bundle's hops (token.issued / token.exchanged, by jti), in log order. */
  hops: StatedHop[];
  /** How many events of the txn the bundle leaves out: other parties' hops and doings. Not those of its own not sealed yet. */
  withheld: number;
  /**
   * Present when the party has a pairwise client (OIDC Core §8.1): of `withheld`, the events it would
   * have been given that name a person, withheld whole (src/evidence/counterparty.ts). Such a
   * bundle may hold no hop at all: each hop the party took part in named a person.
   */
  persons_withheld?: number;
}

/** How a party takes part in a hop (src/evidence/counterparty.ts participation). */
export const counterpartyRoles = ['client', 'actor', 'audience', 'subject_token_client', 'partner'] as const;
export type CounterpartyRole = (typeof counterpartyRoles)[number];

export interface StatedHop {
  jti: string;
  /** `took_part`: a hop the party took part in (`as` says how); `chain`: an earlier hop that led to one of those. */
  part: 'took_part' | 'chain';
  as?: CounterpartyRole[];
}

/** What verify-bundle reports of a counterparty's bundle. */
export interface CounterpartySummary {
  client: string;
  lei?: string;
  tookPart: number;
  chain: number;
  withheld: number;
  /** Of those, the events withheld for naming a person (a party with a pairwise client). */
  personsWithheld?: number;
  /** The mandate versions (`id v<N>`) and consent grants the bundle's hops name: the references of the chain. */
  mandates: string[];
  grants: string[];
}

const hopTypes: ReadonlySet<string> = new Set(['token.issued', 'token.exchanged']);

/** The jti of a hop event, or undefined for any other event. */
export function hopJti(event: Pick<StoredAuditEvent, 'type' | 'details'>): string | undefined {
  const jti = event.details?.jti;
  return hopTypes.has(event.type) && typeof jti === 'string' ? jti : undefined;
}

/** The parent hop's jti of an exchange (RFC 8693: the subject token's), when it had one. */
export function parentJti(event: Pick<StoredAuditEvent, 'type' | 'details'>): string | undefined {
  const parent = event.details?.parent_jti;
  return event.type === 'token.exchanged' && typeof parent === 'string' ? parent : undefined;
}

/**
 * Checks a counterparty statement against the bundle's events (each already proven into the
 * checkpoint): one txn; every hop of the bundle stated, and only those; at least one hop the party
 * took part in, each with how; every `chain` hop an ancestor (by `parent_jti`, within the bundle)
 * of one of those; `withheld` a count. Undefined statement: not a counterparty's bundle.
 */
export function checkCounterpartyStatement(
  stated: unknown,
  events: readonly { event: StoredAuditEvent }[],
  query: { txn?: string } | undefined,
): { problems: string[]; summary?: CounterpartySummary } {
  if (stated === undefined) return { problems: [] };
  const problems: string[] = [];
  const s = (typeof stated === 'object' && stated !== null && !Array.isArray(stated) ? stated : {}) as Record<string, unknown>;
  if (typeof s.client !== 'string' || s.client === '' || (s.lei !== undefined && typeof s.lei !== 'string') || !Number.isSafeInteger(s.withheld) || (s.withheld as number) < 0 || !Array.isArray(s.hops)) {
    return { problems: ['counterparty: not a counterparty statement (client, withheld, hops)'] };
  }
  const personsWithheld = s.persons_withheld;
  if (personsWithheld !== undefined && (!Number.isSafeInteger(personsWithheld) || (personsWithheld as number) < 0 || (personsWithheld as number) > (s.withheld as number))) {
    problems.push('counterparty: persons_withheld must be a count within withheld');
  }
  if (typeof query?.txn !== 'string' || Object.keys(query).length !== 1) problems.push('counterparty: a counterparty’s bundle is the evidence of one txn');
  const byJti = new Map<string, StoredAuditEvent>();
  for (const { event } of events) {
    const jti = hopJti(event);
    if (jti !== undefined && !byJti.has(jti)) byJti.set(jti, event);
  }
  const parts = new Map<string, 'took_part' | 'chain'>();
  for (const [i, hop] of (s.hops as unknown[]).entries()) {
    const h = (typeof hop === 'object' && hop !== null ? hop : {}) as Record<string, unknown>;
    const as = h.as;
    const roles = Array.isArray(as) && as.length > 0 && as.every((r) => (counterpartyRoles as readonly string[]).includes(r as string));
    if (typeof h.jti !== 'string' || (h.part !== 'took_part' && h.part !== 'chain') || (h.part === 'took_part' ? !roles : as !== undefined)) {
      problems.push(`counterparty: hop ${i} is not a stated hop (jti, part, and for a hop taken part in, as what)`);
      continue;
    }
    if (parts.has(h.jti)) problems.push(`counterparty: hop ${h.jti} is stated twice`);
    else if (!byJti.has(h.jti)) problems.push(`counterparty: hop ${h.jti} is stated, and the bundle holds no token event with that jti`);
    parts.set(h.jti, h.part);
  }
  for (const jti of byJti.keys()) if (!parts.has(jti)) problems.push(`counterparty: the bundle's hop ${jti} is not stated`);
  const tookPart = [...parts].filter(([, part]) => part === 'took_part').map(([jti]) => jti);
  // A pairwise party's hops may all name a person, and be withheld whole: then the bundle has none.
  const allHopsWithheld = tookPart.length === 0 && parts.size === 0 && typeof personsWithheld === 'number' && personsWithheld > 0;
  if (tookPart.length === 0 && !allHopsWithheld) problems.push('counterparty: the statement names no hop its client took part in');
  // Every chain hop leads to a hop taken part in: walk up from each of those.
  const reached = new Set<string>();
  for (const jti of tookPart) {
    let at = byJti.has(jti) ? parentJti(byJti.get(jti)!) : undefined;
    while (at !== undefined && byJti.has(at) && !reached.has(at)) {
      reached.add(at);
      at = parentJti(byJti.get(at)!);
    }
  }
  for (const [jti, part] of parts) if (part === 'chain' && byJti.has(jti) && !reached.has(jti)) problems.push(`counterparty: hop ${jti} is stated as the chain, and leads to no hop taken part in`);
  const hops = [...byJti.values()];
  const mandates = [...new Set(hops.flatMap((e) => (e.mandate ? [`${e.mandate.id} v${e.mandate.v}`] : [])))];
  const grants = [...new Set(hops.flatMap((e) => (typeof e.details?.grant_id === 'string' ? [e.details.grant_id] : [])))];
  return {
    problems,
    summary: {
      client: s.client,
      ...(typeof s.lei === 'string' ? { lei: s.lei } : {}),
      tookPart: tookPart.length,
      chain: parts.size - tookPart.length,
      withheld: s.withheld as number,
      ...(typeof personsWithheld === 'number' ? { personsWithheld } : {}),
      mandates,
      grants,
    },
  };
}
