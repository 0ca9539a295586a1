/**
 * The Cedar schema every policy set is validated against (strict mode) and every request is
 * checked against: Clearance's entities (DESIGN §3) and its business-verb scopes as actions.
 * docs/policy.md describes it for policy authors; `request.ts` builds entities of these shapes.
 */

/** Action groups: `action in Action::"trading"` names every trading scope at once. */
export const actionGroups = {
  trading: ['order:create', 'order:cancel', 'order:amend', 'rfq:send'],
  post_trade: ['allocation:propose', 'allocation:approve', 'settlement:submit', 'settlement:amend'],
  read: ['position:view', 'report:view', 'report:export', 'marketdata:read'],
  // The `transfer` authorization_details type (src/transfers/detail.ts): one action per transfer_type, on the source Account.
  transfers: ['transfer:withdrawal', 'transfer:internal', 'transfer:collateral'],
} as const;

/** Every action (scope) a request may name: the scope vocabulary of DESIGN §3. */
export const policyActions: readonly string[] = Object.values(actionGroups).flat();

export const principalTypes = ['User', 'Client', 'Agent'] as const;
export type PrincipalType = (typeof principalTypes)[number];
export const resourceTypes = ['ResourceServer', 'Account', 'Instrument'] as const;
export type ResourceType = (typeof resourceTypes)[number];

/** Bumped when the schema changes in a way that can invalidate stored policy sets. */
export const schemaVersion = 'clearance-policy-schema-7';

const entities = `// Clearance policy schema (${schemaVersion}). Times are epoch seconds; amounts are whole units.

// A firm (DESIGN §3). Desks, accounts, clients and agents are members ("in") of their legal entity.
entity LegalEntity = {
  lei: String,
  jurisdiction: String,          // ISO 3166-1 alpha-2
  home_region: String,
  data_regions?: Set<String>,    // home_region and the other regions it permits its data in
  roles: Set<String>,            // broker, arranger, clearing, custodian, venue, asset_manager
  kyc_status?: String,           // its KYC record's: pending | verified | expired | rejected | frozen; set by Clearance, absent without a record
};

entity Desk in [LegalEntity] = {
  legal_entity: LegalEntity,
  jurisdiction: String,          // the legal entity's
  product_classes: Set<String>,  // instrument classes the desk trades
  time_zone?: String,            // IANA time zone, e.g. Europe/London
};

// A person; a member of each of their desks.
entity User in [Desk] = {
  status: String,                // active | locked | disabled
  kyc_status: String,            // their KYC record's: pending | verified | expired | rejected | frozen, or none
  suitability: Set<String>,      // instrument classes the person is assessed suitable for
  product_classes: Set<String>,  // every product class of the person's desks
  jurisdictions: Set<String>,    // the jurisdictions of the legal entities of the person's desks
  client_category?: String,
  roles?: Set<String>,           // the person's roles (e.g. trader, approver, recovery-approver); set by Clearance
  supervises?: Set<Desk>,        // the desks the person supervises (users[].attributes.supervises)
  approval_limit?: Long,         // the largest notional, in whole units, the person may approve (users[].attributes.approval_limit)
};

// An OAuth client of kind service or app; a member of its owning legal entity.
entity Client in [LegalEntity] = {
  kind: String,
  owner_lei?: String,
  jurisdiction?: String,         // the owning legal entity's, when it is known
};

// An OAuth client of kind agent: a trading algorithm.
entity Agent in [LegalEntity] = {
  kind: String,
  owner_lei?: String,
  jurisdiction?: String,
};

entity ResourceServer = {
  identifier: String,
  scopes: Set<String>,
  region?: String,               // where it processes data (data residency)
};

// An account; a member of its legal entity and of its desk.
entity Account in [Desk, LegalEntity] = {
  legal_entity: LegalEntity,
  jurisdiction: String,          // the legal entity's
  home_region: String,           // the legal entity's
  region: String,                // where the account's data resides
  desk?: Desk,
};

entity Instrument = {
  instrument_class: String,
  complex: Bool,                 // from the instrument class (instrument_classes[].complex)
  venue?: String,
};

// The mandate a request is made under (src/mandates), with the constraints it carries.
type Mandate = {
  id: String,
  version: Long,
  scopes?: Set<String>,
  instrument_classes?: Set<String>,
  venues?: Set<String>,
  regions?: Set<String>,
  max_notional?: Long,
  currency?: String,
};

// The risk engine's assessment of the request (src/risk, docs/risk.md), set by Clearance.
type Risk = {
  score: Long,                   // 0 (nothing unusual) to 100
  level: String,                 // low | medium | high
  signals: Set<String>,          // the signals that fired (docs/risk.md "Signals")
};

// Who vouched for a person's authentication (src/federation/upstream, docs/identity-brokering.md), set by Clearance.
type Assurance = {
  source: String,                // the issuer that authenticated the person: Clearance's own, or the upstream identity provider's
  federated: Bool,               // signed in through an upstream identity provider
};

// The algorithmic agent a token is issued to (src/agents, docs/agents.md), set by Clearance.
type AgentModel = {
  id: String,                    // the agent's id
  strategy: String,
  environment: String,           // production | staging | development
  model_version: String,
  model_digest: String,          // sha256:<hex> of the model artifact
  model_approved: Bool,          // the version was approved by a second person (model-risk)
  venues: Set<String>,           // the venues the agent may trade on (agents[].venues; empty: not limited)
  instrument_classes: Set<String>, // the instrument classes it may trade (empty: not limited)
  max_notional?: Long,           // its notional envelope, in whole units of envelope_currency
  envelope_currency?: String,
};

type RequestContext = {
  time: Long,                    // when the decision is made, set by Clearance
  region?: String,               // where the request is served / the data would go
  acr?: String,                  // authentication context class of the person (src/identity/acr.ts)
  acr_levels?: Set<String>,      // set by Clearance from acr: every level of the ladder acr meets
  auth_time?: Long,              // when the person authenticated (epoch seconds)
  auth_age?: Long,               // set by Clearance: time - auth_time, in seconds
  local_time?: Long,             // set by Clearance: minutes after midnight in the desk's time zone
  local_weekday?: Long,          // set by Clearance: 1 (Monday) to 7 (Sunday) in the desk's time zone
  new_instrument_class?: Bool,   // set by Clearance: the person was never issued a token to trade this class
  new_settlement_account?: Bool, // set by Clearance: the person was never issued a token to use this account
  approved?: Bool,               // set by Clearance: the person approved exactly these order/settlement entries with a passkey
  approvals?: Long,              // set by Clearance: how many second persons approved the request (four-eyes, src/approvals)
  approval_kind?: String,        // set by Clearance for the approve action: ciba | recovery | break_glass
  kyc_status?: String,           // the principal's (a person's own, from their record), or the end client's
  suitability?: Set<String>,
  risk?: Risk,                   // set by Clearance: the risk engine's assessment of this request
  notional?: Long,
  currency?: String,             // ISO 4217
  instrument_class?: String,
  venue?: String,
  mandate?: Mandate,
  agent?: AgentModel,            // set by Clearance: the agent and its approved model version
  managed_device?: Bool,         // set by Clearance for a person: signed in from a managed device (its certificate over mTLS)
  device_id?: String,            // set by Clearance: which managed device
  assurance?: Assurance,         // set by Clearance for a person: the source of assurance of acr
  // A transfer entry's fields (src/transfers/detail.ts, docs/transfers.md), set by Clearance; amounts are also in notional, currency or chain.
  transfer_type?: String,        // withdrawal | internal | collateral
  asset?: String,                // ISO 4217 code, or CAIP-19 asset type (eip155:1/slip44:60)
  amount?: Long,                 // in whole units of the asset, rounded up (as notional: a requested amount)
  chain?: String,                // a crypto-asset transfer's CAIP-2 chain id (eip155:1)
  destination_kind?: String,     // internal | iban | blockchain
  destination?: String,          // the destination key: internal:<account> | iban:<IBAN> | caip10:<chain>:<address>
  purpose?: String,
  travel_rule_present?: Bool,    // the entry carries the FATF travel rule's originator and beneficiary (IVMS 101)
};
`;

/**
 * Four-eyes (src/approvals/four-eyes.ts): may this person (principal) approve a request about
 * that person (resource)? Decided once per order entry, with its notional, class and the approver's
 * authentication in the context. Not a scope: no token and no AuthZEN caller can ask for it.
 */
export const approveAction = 'approve';
const approveAppliesTo = { principal: ['User'], resource: ['User'] } as const;

/** The principal and resource types the schema declares an action for; undefined for an action it does not know. */
export function actionAppliesTo(action: string): { principal: readonly string[]; resource: readonly string[] } | undefined {
  if (action === approveAction) return approveAppliesTo;
  return policyActions.includes(action) ? { principal: principalTypes, resource: resourceTypes } : undefined;
}

function actionsText(): string {
  const groups = Object.keys(actionGroups).map((g) => `action "${g}";`);
  const declare = (action: string, group?: string) => {
    const { principal, resource } = actionAppliesTo(action)!;
    return `action "${action}"${group ? ` in ["${group}"]` : ''} appliesTo { principal: [${principal.join(', ')}], resource: [${resource.join(', ')}], context: RequestContext };`;
  };
  const actions = Object.entries(actionGroups).flatMap(([group, scopes]) => scopes.map((scope) => declare(scope, group)));
  return [...groups, ...actions, declare(approveAction)].join('\n');
}

/** The schema in Cedar's human-readable format. */
export const cedarSchema = `${entities}\n${actionsText()}\n`;
