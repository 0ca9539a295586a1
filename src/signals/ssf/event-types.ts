import type { StoredAuditEvent } from '../../audit/events.ts';

/**
 * What the transmitter sends (docs/signals.md "Event types"): each audit event that a receiver
 * should act on becomes one security event — a CAEP event (OpenID CAEP 1.0 §3), a RISC event
 * (OpenID RISC 1.0 §2), or one of Clearance's own — about a subject identifier (SSF 1.0 §3). The
 * mapping reads only the audit event, which holds no secret and no token: a SET never carries more.
 */
const caep = 'https://schemas.openid.net/secevent/caep/event-type/';
const risc = 'https://schemas.openid.net/secevent/risc/event-type/';
const clearance = 'https://clearance.dev/secevent/';

export const ssfEventTypes = {
  sessionRevoked: `${caep}session-revoked`,
  credentialChange: `${caep}credential-change`,
  tokenClaimsChange: `${caep}token-claims-change`,
  assuranceLevelChange: `${caep}assurance-level-change`,
  accountDisabled: `${risc}account-disabled`,
  accountPurged: `${risc}account-purged`,
  credentialCompromise: `${risc}credential-compromise`,
  mandateRevoked: `${clearance}mandate-revoked`,
  breakGlassActivated: `${clearance}break-glass-activated`,
  breakGlassEnded: `${clearance}break-glass-ended`,
  /**
   * Clearance's own: one of its token-signing keys was revoked as compromised. No CAEP or RISC type
   * fits — RISC credential-compromise is about a subject's credential, and this is the issuer's own
   * key, about no subject — so the subject is the key (`opaque` kid).
   */
  signingKeyCompromised: `${clearance}signing-key-compromised`,
  /** SSF 1.0 §8.1.4: the answer to a verification request; always delivered, never requested. */
  verification: 'https://schemas.openid.net/secevent/ssf/event-type/verification',
} as const;

/** The event types a receiver may request (SSF `events_supported`). */
export const supportedEventTypes: readonly string[] = Object.values(ssfEventTypes).filter((t) => t !== ssfEventTypes.verification);

/** An SSF subject identifier (SSF 1.0 §3; RFC 9493 formats). */
export type SubjectId =
  | { format: 'iss_sub'; iss: string; sub: string }
  | { format: 'opaque'; id: string }
  | { format: 'email'; email: string }
  | { format: 'complex'; user?: SubjectId; session?: SubjectId; application?: SubjectId; tenant?: SubjectId };

/** One security event: its type, whom it is about, its payload, and the audit event's txn. */
export interface SecurityEvent {
  type: string;
  subject: SubjectId;
  payload: Record<string, unknown>;
  txn?: string;
  /** The audit event it comes from (its id), for the record. */
  auditEventId: string;
}

type Initiator = 'admin' | 'user' | 'policy' | 'system';

/** The security events an audit event gives (none for most). `issuer`: Clearance's, for `iss_sub`. */
export function securityEventsOf(event: StoredAuditEvent, issuer: string): SecurityEvent[] {
  const at = Math.floor(event.time / 1000);
  const details = event.details ?? {};
  const person = (sub: string | undefined): SubjectId | undefined => (sub === undefined ? undefined : { format: 'iss_sub', iss: issuer, sub });
  const make = (type: string, subject: SubjectId | undefined, payload: Record<string, unknown>): SecurityEvent[] =>
    subject === undefined ? [] : [{ type, subject, payload: { event_timestamp: at, ...payload }, ...(event.txn !== undefined ? { txn: event.txn } : {}), auditEventId: event.id }];
  const initiator = (): Initiator => (event.actor === undefined || event.actor === 'clearance' ? 'system' : event.actor === event.subject ? 'user' : 'admin');
  const reason = typeof details.reason === 'string' ? { reason_admin: { en: details.reason } } : {};

  switch (event.type) {
    // CAEP session-revoked: the access a token, a grant or a session gave is over. A revoked
    // refresh token ends its family only (RFC 7009 §2.1; src/endpoints/revoke), not its grant's
    // other families (other devices): the session named is the family — the id access tokens
    // carry as `refresh_family`, as they carry the grant's as `grant_id` — else the grant, else the jti.
    case 'token.revoked': {
      const session = str(details.family_id) ?? str(details.grant_id) ?? str(details.jti);
      const user = person(event.subject);
      const subject: SubjectId | undefined =
        user && session ? { format: 'complex', user, session: { format: 'opaque', id: session } } : (user ?? (session ? { format: 'opaque', id: session } : undefined));
      return make(ssfEventTypes.sessionRevoked, subject, { initiating_entity: 'user', ...reason });
    }
    case 'consent.revoked':
      return make(ssfEventTypes.sessionRevoked, sessionOf(person(event.subject), str(details.grant_id)), { initiating_entity: initiator(), ...reason });
    case 'user.logged_out':
      return make(ssfEventTypes.sessionRevoked, sessionOf(person(event.subject), str(details.session)), { initiating_entity: 'user' });
    case 'user.signed_out_everywhere':
    case 'recovery.access_ended':
      return make(ssfEventTypes.sessionRevoked, person(event.subject), { initiating_entity: initiator() });

    // CAEP credential-change (§3.2): credential_type and change_type are REQUIRED.
    case 'user.password_reset':
      return [
        ...make(ssfEventTypes.credentialChange, person(event.subject), { credential_type: 'password', change_type: 'update', initiating_entity: initiator() }),
        ...make(ssfEventTypes.sessionRevoked, person(event.subject), { initiating_entity: initiator() }),
      ];
    case 'user.factor_enrolled':
      return make(ssfEventTypes.credentialChange, person(event.subject), { credential_type: 'app', change_type: 'create', initiating_entity: initiator() });
    case 'user.factor_removed':
      return make(ssfEventTypes.credentialChange, person(event.subject), { credential_type: 'app', change_type: 'delete', initiating_entity: initiator() });
    case 'passkey.registered':
      return make(ssfEventTypes.credentialChange, person(event.subject), { credential_type: 'fido2-platform', change_type: 'create', initiating_entity: initiator() });
    case 'passkey.removed':
      return make(ssfEventTypes.credentialChange, person(event.subject), { credential_type: 'fido2-platform', change_type: 'delete', initiating_entity: initiator() });

    // CAEP assurance-level-change (§3.4): a step-up met; the levels are Clearance's acr values.
    case 'step_up.completed': {
      if (details.outcome !== 'met' || typeof details.acr !== 'string') return [];
      return make(ssfEventTypes.assuranceLevelChange, person(event.subject), { namespace: 'custom', current_level: details.acr, change_direction: 'increase', initiating_entity: 'user' });
    }

    // CAEP token-claims-change (§3.3): a mandate's new version is what its tokens now stand on.
    case 'mandate.amended':
      if (!event.mandate) return [];
      return make(ssfEventTypes.tokenClaimsChange, event.client ? { format: 'opaque', id: event.client } : person(event.subject), { claims: { mandate: { id: event.mandate.id, v: event.mandate.v } }, initiating_entity: 'admin' });

    // RISC (§2): the account is disabled, purged, or a credential may be compromised.
    case 'user.disabled':
      return make(ssfEventTypes.accountDisabled, person(event.subject), {});
    case 'user.locked':
      // The automatic lockout after failed passwords is no disabling; an administrator's lock is.
      return event.actor !== undefined && event.actor !== event.subject && event.decision?.reasons.includes('admin') ? make(ssfEventTypes.accountDisabled, person(event.subject), {}) : [];
    case 'risk.suspended':
      return make(ssfEventTypes.accountDisabled, event.subject !== undefined ? person(event.subject) : event.client !== undefined ? { format: 'opaque', id: event.client } : undefined, { reason: 'hijacking' });
    case 'user.deleted':
      return make(ssfEventTypes.accountPurged, person(event.subject), {});
    case 'passkey.counter_regressed':
      return make(ssfEventTypes.credentialCompromise, person(event.subject), { credential_type: 'fido2-platform', reason_admin: { en: 'the authenticator signature counter did not grow: it may have been cloned' } });

    // Clearance's own: a mandate revoked, an emergency account opened and closed, a signing key compromised.
    case 'mandate.revoked':
      if (!event.mandate) return [];
      return make(ssfEventTypes.mandateRevoked, { format: 'opaque', id: event.mandate.id }, { mandate: { id: event.mandate.id, v: event.mandate.v }, grantee: event.subject, ...reason });
    case 'break_glass.activated':
      return make(ssfEventTypes.breakGlassActivated, event.subject !== undefined ? { format: 'opaque', id: event.subject } : undefined, { activation: event.txn, requested_by: event.actor });
    case 'break_glass.ended':
    case 'break_glass.expired':
      return make(ssfEventTypes.breakGlassEnded, event.subject !== undefined ? { format: 'opaque', id: event.subject } : undefined, { activation: event.txn, how: event.type === 'break_glass.expired' ? 'expired' : 'ended' });
    // A receiver that verifies our tokens itself drops the key (and refetches the JWKS); the kid
    // and the key that signs now, nothing about who asked.
    case 'key.compromised': {
      const kid = str(details.kid);
      return make(ssfEventTypes.signingKeyCompromised, kid !== undefined ? { format: 'opaque', id: kid } : undefined, {
        kid,
        ...(str(details.promoted_kid) !== undefined ? { promoted_kid: details.promoted_kid } : {}),
        jwks_uri: `${issuer}/jwks`,
        initiating_entity: 'admin',
      });
    }
    default:
      return [];
  }
}

function sessionOf(user: SubjectId | undefined, session: string | undefined): SubjectId | undefined {
  if (!user) return undefined;
  return session === undefined ? user : { format: 'complex', user, session: { format: 'opaque', id: session } };
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/**
 * The keys a subject identifier is matched by (a stream's added or removed subjects): itself, and
 * for a complex one, each of its members — so adding a person's `iss_sub` covers their sessions.
 */
export function subjectKeys(subject: SubjectId): string[] {
  const key = (s: SubjectId): string | undefined => {
    switch (s.format) {
      case 'iss_sub':
        return `iss_sub ${s.iss} ${s.sub}`;
      case 'opaque':
        return `opaque ${s.id}`;
      case 'email':
        return `email ${s.email.toLowerCase()}`;
      default:
        return undefined;
    }
  };
  if (subject.format !== 'complex') return [key(subject)!];
  return [subject.user, subject.session, subject.application, subject.tenant].filter((s): s is SubjectId => s !== undefined).map(key).filter((k): k is string => k !== undefined);
}

/** A subject identifier a receiver sent (add/remove subject), checked; undefined when malformed. */
export function readSubjectId(value: unknown): SubjectId | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  const text = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 512;
  switch (o.format) {
    case 'iss_sub':
      return text(o.iss) && text(o.sub) && Object.keys(o).length === 3 ? { format: 'iss_sub', iss: o.iss as string, sub: o.sub as string } : undefined;
    case 'opaque':
      return text(o.id) && Object.keys(o).length === 2 ? { format: 'opaque', id: o.id as string } : undefined;
    case 'email':
      return text(o.email) && Object.keys(o).length === 2 ? { format: 'email', email: o.email as string } : undefined;
    default:
      return undefined;
  }
}
