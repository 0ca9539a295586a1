import type { Transaction } from 'kysely';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';

/**
 * The audit event catalogue (DESIGN §5). Names are dotted: `<subject>.<what happened>`.
 * Components add their event types here, so the catalogue is one readable list.
 */
export const auditEventTypes = [
  'token.issued',
  // A token exchanged for the next hop (RFC 8693, src/grants/token-exchange.ts): names its parent's jti.
  // Also a JWT authorization grant issued for a partner's authorization server (identity chaining,
  // src/grants/exchange/authorization-grant.ts): `audience` that server, `details.chaining`.
  'token.exchanged',
  'token.revoked',
  'token.introspected',
  // A tls_client_auth client let in although its partner CA's revocation status could not be
  // checked (the profile fails soft: src/clients/trust-anchors/audit.ts), with why.
  'client.authenticated',
  // A refused client authentication; a refused anchored certificate says `details.reason`
  // (certificate_untrusted_anchor, certificate_revoked, certificate_revocation_unknown,
  // certificate_revocation_unavailable) and names the anchor and the certificate (never its subject).
  'client.auth_failed',
  'client.throttled',
  'client.registered',
  // Dynamic registration (src/clients/registration): metadata claiming authority its initial access
  // token or registration does not give (RFC 7591 §5), and RFC 7592 updates and deletions.
  'client.registration_refused',
  'client.registration_updated',
  'client.registration_deleted',
  // The client credential lifecycle (src/clients/credentials.ts, expiry.ts; docs/lifecycle.md): a
  // secret rotated (its rollover window's end), the replaced secret used in that window (at most
  // once a minute per client and node), a secret or a registered certificate nearing its expiry
  // (once per threshold: 30, 7, 1 days). Dates only, never a secret or its digest.
  'client.secret_rotated',
  'client.previous_secret_used',
  'client.secret_expiring',
  'client.certificate_expiring',
  'policy.allowed',
  'policy.denied',
  // A policy set version made active (src/policy): who approved it, which it replaced; an
  // activation through the admin API refused for its caller (a client's or a delegate's token, a
  // sign-in too weak or more than 5 minutes old: the reason, the version when stored).
  'policy.activated',
  'policy.activation_refused',
  'key.created',
  'key.rotated',
  'key.retired',
  // A token-signing key revoked as compromised (src/keys/compromise.ts, docs/keys.md): out of the
  // JWKS at once, its tokens dead, the refresh families issued with them revoked, the next key
  // signing. ONE event names the kid, what it ended (counts), the promoted kid, and who asked and
  // allowed it (the CLI's operator; the requester and approvers; or the break-glass activation).
  'key.compromised',
  // The audit checkpoint key replaced by a new one (src/audit/audit-key.ts rotate; by hand or on
  // schedule, src/lifecycle/key-schedule.ts): both key ids; the old key stays for verification.
  'audit.key_rotated',
  // A master key rotation (src/keys/rewrap.ts, `clearance keys rewrap`): its start (both key ids,
  // resumed or not), each column's count of values re-sealed, its completion. Never a key.
  'master_key.rewrap_started',
  'master_key.rewrap_progress',
  'master_key.rewrap_completed',
  'config.applied',
  // One change an apply made (src/apply, src/lifecycle/prune.ts): kind, id, outcome (created,
  // updated, removed, disabled), the names of the fields it changed (never their values), and the
  // SHA-256 digest of the document that asked for it — so a change is traced to its commit.
  'config.changed',
  'config.apply_refused', // POST /admin/apply of a trust change refused for its person's token (src/endpoints/admin/apply.ts): reason, digest, changes
  'audit.pruned',
  // A legal hold placed on a txn, subject, client or time range (src/audit/holds.ts): pruning
  // keeps every event it covers. Names the hold, its scope and matter reference, who placed it.
  'audit.hold_placed',
  // A hold released after its two-person approval (src/audit/hold-release.ts): who asked, who approved.
  'audit.hold_released',
  'audit.exported',
  // A read of the log through the audit API (who, which query or event, how many events): reading
  // events is reading personal data, itself on the record (AMENDMENTS, console and operations).
  'audit.read',
  // A data subject's keys destroyed (`clearance audit erase-subject`, src/audit/erase.ts): the
  // personal fields of their events no longer open, the events still verify. Names the subject id,
  // the key generations destroyed and the number of events affected; never a personal value.
  'audit.subject_erased',
  // An erasure refused (src/audit/erase.ts, src/endpoints/admin/erasure.ts): who asked, the subject
  // id and why — a legal hold covers it (and which), the caller does not hold compliance, or the
  // subject is not one of the caller's legal entities' people (or of no firm, for a whole-log reader only).
  'audit.erasure_refused',
  // A read of the people's access review through the admin API (who read it, how many people):
  // usernames, roles and sign-in means are personal data, so reading them is on the record too.
  'people.reviewed',
  // A SCIM write refused for the caller's legal entities (src/lifecycle/scim/reach.ts): a person or
  // desk of another firm (answered 404, as for none), a person or desk of another firm named in the
  // write (403), or a client of no legal entity (403). `details.reason`, `operation`, and the legal
  // entities outside the caller's.
  'scim.refused',
  // A full verification of the log (`clearance audit verify`): its result, the tree it covered and
  // who ran it — the "last full verify" of the log's status (GET /admin/audit/status).
  'audit.verified',
  // Authorization code flow (src/authorization, src/grants/authorization-code.ts, refresh-token.ts).
  'code.issued',
  'code.redeemed',
  'code.reused',
  'consent.granted',
  'consent.denied',
  'consent.revoked',
  // Step-up authentication (src/authorization/step-up.ts): a signed-in person sent to sign in at a
  // higher level, and the outcome (met, unmet, declined, abandoned) with the factor used.
  'step_up.requested',
  'step_up.completed',
  'refresh.rotated',
  'refresh.reused',
  // People (src/identity): password logins, lockouts, logout. A certificate (smart card) sign-in
  // (src/identity/certificates) is a `user.login_succeeded`/`user.login_failed` with method
  // `certificate`: its authority, serial, issuer and SHA-256 (never its subject), and a failure's
  // reason (untrusted, revoked, device_certificate, proxy_header_untrusted, …).
  'user.login_succeeded',
  'user.login_failed',
  'user.locked',
  'user.logged_out',
  // People's factors (src/identity/factors): each factor verified or refused during a sign-in
  // (details.factor: password, totp, recovery_code; details.credential: the factor's id), an
  // authenticator enrolled or removed, recovery codes generated. Never a secret or a code.
  'user.factor_succeeded',
  'user.factor_failed',
  'user.factor_enrolled',
  'user.factor_removed',
  // An authenticator kept: the only factor meeting the person's role minimum (src/identity/factors/enrolment.ts).
  'user.factor_removal_refused',
  'user.recovery_codes_generated',
  // A person's lifecycle (src/identity/lifecycle.ts): each names the refresh tokens, sessions and
  // codes it ended (an administrator's `user.locked` too; the automatic lockout ends no tokens).
  'user.disabled',
  'user.deleted',
  'user.password_reset',
  'user.signed_out_everywhere',
  // Joiners, movers, leavers (src/lifecycle, docs/lifecycle.md): a leaver's offboarding, naming by
  // id and count everything it ended, marked for reassignment or flagged; a mover's change of desks
  // (and legal entity), naming the grants and mandates the new position no longer allows.
  'user.offboarded',
  'user.moved',
  // A guarded role (src/identity/roles.ts `guardedRoles`) given with a second person's approval
  // (src/identity/role-grants.ts, approval kind `role_grant`): the role, the grantee, who asked and
  // who approved; and a grant refused — a caller the role-grants endpoint does not accept, a PUT,
  // PATCH or apply document through the admin API that would have added one, or an approved grant
  // the person's record no longer allows (each with its reason).
  'user.role_granted',
  'user.role_grant_refused',
  // A password an administrator may not set through the admin API: the person holds a guarded
  // role, or a grant of one waits (reason guarded_role / role_grant_waiting; via users or apply).
  'user.password_reset_refused',
  // Identity brokering (src/federation/upstream): a sign-in through an upstream identity provider is a
  // `user.login_succeeded` with method `upstream` and its source of assurance; a person provisioned
  // at their first such sign-in, an upstream identity linked to an existing person by an
  // administrator, a sign-in the upstream's answer could not complete (with why), a back-channel
  // logout token refused (an accepted one is `user.signed_out_everywhere`, via upstream-logout), and a provider
  // disabled by apply (with the sessions it ended).
  'user.provisioned',
  'user.linked',
  'upstream.sign_in_refused',
  'upstream.logout_refused',
  'identity_provider.disabled',
  // Passkeys (src/identity/passkeys): each names the credential id, never key material. A passkey
  // sign-in is a `user.login_succeeded`/`user.login_failed` with method `passkey`.
  'passkey.registered',
  'passkey.registration_failed',
  'passkey.renamed',
  'passkey.removed',
  'passkey.removal_refused',
  // An assertion whose signature counter did not grow: the authenticator may have been cloned.
  'passkey.counter_regressed',
  // Mandates (src/mandates): each lifecycle step of a delegation record.
  'mandate.created',
  'mandate.accepted',
  'mandate.amended',
  'mandate.revoked',
  'mandate.expired',
  // A mandate version lapsed (revoked, superseded, expired) while a trade that used it was in
  // flight (src/mandates/lapses.ts): one per txn, filed under it, naming the lapse.
  'mandate.lapsed_in_flight',
  // What-you-see-is-what-you-sign (src/approvals): a person approved exactly some
  // authorization_details with a passkey — the event carries the evidence an auditor verifies
  // offline (verify-bundle) — or an approval failed (a changed order, a bad assertion).
  'approval.given',
  'approval.refused',
  // Requests a second person approves (src/approvals/requests.ts, docs/approvals.md): opened (CIBA,
  // recovery, break-glass), one person's denial with its reason, settled (enough approvals, or a
  // denial), expired unanswered. Each carries txn = the request id; `approval.given` and
  // `approval.denied` carry the decider's evidence, `approval.refused` why a decision was refused.
  'approval.requested',
  'approval.denied',
  'approval.completed',
  'approval.expired',
  // Recovery of a lost authenticator (src/identity/recovery, docs/recovery.md); the request itself
  // is an approval request of kind `recovery` (`approval.*`, txn = its id). An opening refused (who
  // asked, why); at approval, everything the person held ended (sessions, refresh tokens, access
  // tokens) and the lost credentials removed (their ids); a use of the enrolment link refused
  // (expired, used, not approved, a wrong password); the passkey enrolled through it. Never the link.
  'recovery.refused',
  'recovery.access_ended',
  'recovery.factors_disabled',
  'recovery.link_refused',
  'recovery.enrolled',
  // Break-glass (src/approvals/break-glass, docs/recovery.md): an activation requested (with its
  // reason), activated by the second custodian's approval, ended by its expiry or stood down
  // early, the review that opens when it ends and its closing by compliance. Each carries txn = the
  // activation id and `break_glass: true` in details, like every token event under it.
  'break_glass.requested',
  'break_glass.activated',
  'break_glass.expired',
  'break_glass.ended',
  'break_glass.review_opened',
  'break_glass.review_closed',
  // A closing of a review refused: the closer is no compliance officer (`not_compliance`), not
  // phishing-resistant (`insufficient_authentication`), or requested or approved the activation
  // (`not_independent`: the reviewer must be independent of it).
  'break_glass.review_refused',
  // A break-glass request, stand-down or review closing refused because the token is no person's
  // own (a client's, or a delegate's `act`): reason `client_token` / `delegated_token`; or a
  // stand-down by someone neither its requester nor a custodian (`not_requester_or_custodian`).
  'break_glass.refused',
  // CIBA ping mode (src/ciba/notify.ts, CIBA Core §10.2): the client's notification endpoint was
  // told that a settled request's tokens are ready, or every attempt failed (the client may poll).
  'ciba.notified',
  'ciba.notification_failed',
  // Risk (src/risk, docs/risk.md). An assessment is recorded in the event of the decision it
  // informed (`details.risk`); these are the risk engine's own: an action refused by its outcome
  // alone (a login, an issuance, an evaluation), an anomaly found against a principal's baseline
  // and resolved by an administrator, a principal suspended by an anomaly's reaction and reinstated
  // by an administrator, an admin API or CLI action from an unusual context (intrusion signals).
  'risk.denied',
  'risk.anomaly',
  'risk.anomaly_resolved',
  'risk.suspended',
  'risk.reinstated',
  'risk.reinstate_refused', // a reinstatement refused to its caller (src/endpoints/risk/index.ts reinstatingPerson)
  'risk.admin_unusual',
  // KYC/AML (src/risk/kyc, docs/risk.md): a person's or legal entity's KYC record changed (with
  // the before and after, and who or which provider changed it), a record past its review date
  // expired, a sanctions/PEP screening list matched a principal (frozen pending a decision) and
  // compliance's decision on the match; a decision refused to its caller (not a compliance person
  // with their own phishing-resistant token: src/endpoints/admin/kyc.ts).
  'kyc.updated',
  'kyc.expired',
  'screening.matched',
  'screening.decided',
  'screening.refused',
  // Partner drift (src/federation/drift, docs/federation.md "Drift"): the scheduled check found a
  // partner's live keys or metadata changed against the baseline (keys added or removed by RFC 7638
  // thumbprint, a key's algorithms changed, the metadata's issuer changed; `action` alert or
  // suspend), its keys or metadata unreachable for longer than the profile's grace, the partner
  // suspended by either under `on_drift: suspend`, an operator's re-approval (the new baseline's
  // thumbprints and issuer). Never key material. A suspended partner's token refused is an
  // `exchange.refused` / `assertion.refused` with reason `partner_suspended`; `partner.token_refused`
  // is no longer written (kept so that logs which hold it still verify). A re-approval through the
  // admin API refused for its caller (a client's or a delegate's token, a sign-in too weak or more
  // than 5 minutes old): `partner.reapproval_refused`, with the reason and the partner when stored.
  'partner.drifted',
  'partner.unreachable',
  'partner.suspended',
  'partner.reapproved',
  'partner.reapproval_refused',
  'partner.token_refused',
  // Every refusal on the record (issue 17 item 3, src/audit/refusals.ts, docs/audit.md "Refusals"):
  // a refused issuance after client authentication (`token.refused`), a refused token exchange
  // (`exchange.refused`, a partner token failing its profile included), a refused JWT bearer
  // assertion (`assertion.refused`), an introspection by a client outside the token's audience
  // (`introspection.refused`). Each names the client, the grant, the OAuth error and a reason
  // code, the subject and txn where known; never the token, assertion or secret (a jti is fine).
  // At most CLEARANCE_REFUSAL_AUDIT_LIMIT per source (client, else address) per window on a node;
  // the rest are counted into one `audit.refusals_suppressed` (count, source, window, reasons).
  'token.refused',
  'exchange.refused',
  'assertion.refused',
  'introspection.refused',
  'audit.refusals_suppressed',
  // The private CA (src/pki, docs/pki.md), recorded as financial controls in the transaction of
  // what they record: the CA created, a certificate issued (profile, holder, serial, key digest,
  // who asked, the approval that allowed it), renewed, revoked (reason, by whom); an issuance
  // refused after its requester was authenticated, and one that waits for approval.
  'pki.ca_initialised',
  'pki.certificate_issued',
  'pki.certificate_renewed',
  'pki.certificate_revoked',
  'pki.issuance_refused',
  'pki.issuance_pending',
  // Algorithmic agents (src/agents, docs/agents.md): a model version proposed by the person who
  // validated it, approved by a second person (model-risk) or denied, an older version retired
  // (its certificates revoked); a workload attestation accepted (the certificate it got) or refused.
  'agent.model_proposed',
  'agent.model_approved',
  'agent.model_denied',
  'agent.model_retired',
  'agent.attested',
  'agent.attestation_refused',
  // A signed request's evidence, reported by a registered producer and verified by Clearance
  // (src/evidence, docs/transaction-signing.md): the record's digest, signer, status and time stamp.
  'evidence.recorded',
  // External evidence (src/evidence/external.ts, docs/evidence.md): a registered producer (an OMS, a
  // venue gateway, a settlement or custody system) appended a typed event under a txn its firm takes
  // part in — the producer's event id, the type, the payload's SHA-256 (never the payload), and when
  // the producer signed it, the JWS's digest and its key's thumbprint; or an append refused after the
  // producer's token was accepted (the error and a reason code: txn_not_party, jws_invalid, conflict…).
  'evidence.appended',
  'evidence.refused',
  // Evidence for counterparties (src/evidence/counterparty.ts, docs/evidence.md "Evidence for
  // counterparties"): a client that took part in a txn fetched its bundle with evidence:counterparty
  // — the hops it took part in, the chain before them, how many events were withheld; or a fetch
  // refused once its token was verified (the error and a reason code: txn_not_party, txn_unknown,
  // insufficient_scope, not_own_token, malformed…). Filed under the txn named, never the bundle.
  'evidence.counterparty_exported',
  'evidence.counterparty_refused',
  // Destination control (src/transfers, docs/transfers.md "Destination control"): an address-book
  // change asked (by a person stepped up to phishing-resistant, or by apply), held for review (asked
  // from a new device: compliance approves too), approved (its cool-down and when it becomes
  // usable) or rejected, a destination removed (at once), a change refused before it was asked
  // (step-up, not of the entity). Each names the destination id, version, key, lei, account and
  // the people involved, txn = the change's approval request; never a beneficiary name (its
  // SHA-256 at most).
  'transfer_destination.requested',
  'transfer_destination.held',
  'transfer_destination.approved',
  'transfer_destination.rejected',
  'transfer_destination.removed',
  'transfer_destination.refused',
  // Enforcement at issuance (src/transfers/enforce.ts, docs/transfers.md "Enforcement at issuance"):
  // a transfer entry refused before any policy is asked — destination not in the book, awaiting
  // approval or cooling down, at or above its approval threshold or held by risk without a second
  // person's approval, over its rolling 24-hour total, totals unavailable. Names the reason, the
  // entry, destination key and id, amount, asset, source account and legal entity. An allowed
  // transfer is in its token event (`details.transfers`).
  'transfer.refused',
] as const;

export type AuditEventType = (typeof auditEventTypes)[number];

/**
 * Whether an event of this type records a refusal: a `*.refused` type, or a policy's denial. The
 * console's delegation view (src/console/chain.ts) and a partner txn's check for a trade under way
 * (src/transactions/partner-txn.ts) tell refusals apart by this one rule.
 */
export function isRefusal(type: string): boolean {
  return type.endsWith('.refused') || type === 'policy.denied';
}

/** What a component records; the log adds time, node id and sequence. Never secrets or raw tokens. */
export interface AuditEvent {
  type: AuditEventType;
  requestId?: string;
  /** Transaction id carried across hops (DESIGN §4). */
  txn?: string;
  /** Who acted (the authenticated client, user or admin). */
  actor?: string;
  /** Whom it is about (token subject, user). */
  subject?: string;
  client?: string;
  issuer?: string;
  audience?: string;
  scopes?: string[];
  mandate?: { id: string; v: number };
  decision?: { allow: boolean; reasons: string[]; policyVersion?: string };
  /** Event-specific facts (e.g. jti, auth method, source address). */
  details?: Record<string, unknown>;
}

/**
 * An event as stored and hashed: what the component recorded plus what the log adds. Its RFC 8785
 * canonical JSON is the Merkle leaf (leaf hash = SHA-256(0x00 || canonical JSON), RFC 9162 §2.1.1).
 */
export interface StoredAuditEvent extends AuditEvent {
  /** Format version of the stored event. */
  v: 1;
  /** Unique event id (UUID). */
  id: string;
  /** When it was recorded, epoch ms. */
  time: number;
  /** The node that recorded it (host:pid). */
  node: string;
}

/** What the work of `AuditLog.recordWith` returns: its value, and the events that justify it. */
export interface Recorded<T> {
  value: T;
  events: AuditEvent[];
}

/** The one recording API every component uses. */
export interface AuditLog {
  /**
   * Records an event. The returned promise resolves once the event is durable, so a caller that
   * awaits it before responding never sends a response whose justification could be lost.
   */
  record(event: AuditEvent): Promise<void>;
  /**
   * Runs `work` in one transaction of its own and records the events it returns in that same
   * transaction, after its writes: the writes of a request and the events that justify them
   * commit together or not at all (one round trip to the database instead of two or more), and
   * the promise resolves with the work's value once both are durable. An event the guard refuses
   * rolls the writes back. The work must use `trx` only (on SQLite, `ctx.storage.db` waits for
   * this transaction) and may take row locks: the events are inserted last, so the audit
   * writers' lock (PostgreSQL) is never held while waiting for another lock.
   */
  recordWith<T>(work: (trx: Transaction<Database>) => Promise<Recorded<T>>): Promise<T>;
  /**
   * Commits `flight` (src/storage/flight.ts) as one transaction with `events` inserted after its
   * statements: as `recordWith`, they commit together or not at all, but the whole transaction is
   * written at once — one round trip on PostgreSQL. Rejects, and writes nothing, when an event is
   * refused (before anything is sent), when an expectation of the flight fails (FlightRefused)
   * or with the database's error. An event about a person this node holds no audit key for
   * writes the person's first key in the same transaction; when the person had one after all,
   * that transaction is refused, writes nothing, and the flight is sent once more under their key
   * (docs/privacy.md "Keys"): the caller's statements then run twice, the first time rolled back,
   * and answer from the second.
   */
  commit(flight: Flight, events: AuditEvent[]): Promise<void>;
}
