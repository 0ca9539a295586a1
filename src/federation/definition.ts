import { Validator, join } from '../validation.ts';
import { readAcrTrust, type AcrTrust } from './upstream/acr-trust.ts';
import { isValidLei } from '../entities/lei.ts';
import { isLoopbackHost } from '../jose/loopback.ts';
import { importPartnerKey, partnerAlgorithms, type PartnerAlg } from './keys.ts';
import { readPartnerCertificateTrust, type PartnerRevocation, type PartnerTrustAnchor } from './trust-anchors.ts';
import { readChaining, type Chaining } from './chaining.ts';

/**
 * A partner: another firm's authorization server whose JWTs Clearance accepts for token exchange
 * (RFC 8693) and the JWT bearer grant (RFC 7523 §2.1), and the trust profile that bounds them
 * (DESIGN §3; docs/federation.md).
 */
export interface Partner {
  /** Our name for the partner; stable, used in logs, audit events and `clearance partner check`. */
  id: string;
  name?: string;
  /** The partner's issuer identifier; a token's `iss` must equal it exactly. */
  issuer: string;
  /** The partner's public keys, inline (exactly one of `jwks` and `jwks_uri`). */
  jwks?: { keys: Record<string, unknown>[] };
  /** Where the partner publishes its keys; fetched with the SSRF rules of src/federation/fetch.ts. */
  jwks_uri?: string;
  /** Signature algorithms accepted from this partner: asymmetric only. */
  algorithms: PartnerAlg[];
  /** Longest `exp - iat` accepted, in seconds. */
  max_assertion_lifetime: number;
  /** Claims every accepted token must carry. */
  required_claims: string[];
  /** Local attribute → claim name; mapped values must be strings. */
  claim_mapping: Record<string, string>;
  /** Our resource servers that tokens issued for this partner's subjects may target. */
  allowed_audiences: string[];
  /** Scopes tokens issued for this partner's subjects may carry. */
  allowed_scopes: string[];
  /** Whether the partner's ID tokens are accepted as subject tokens (RFC 8693 id_token type). */
  accept_id_tokens: boolean;
  /** Whether jwks_uri and metadata may be fetched from private, loopback or link-local addresses. */
  allow_private_network: boolean;
  /** Our clients allowed to present this partner's tokens; absent: any authenticated client. */
  clients?: string[];
  /**
   * Drift (src/federation/drift, docs/federation.md "Drift"): seconds between two scheduled checks
   * of the partner's live keys and metadata; absent: defaultDriftCheckInterval.
   */
  drift_check_interval?: number;
  /** Seconds its keys or metadata may stay unreachable before `partner.unreachable`; absent: defaultUnreachableGrace. */
  unreachable_grace?: number;
  /** What a drift does besides its event and alert: `suspend` refuses the partner's tokens until re-approval; absent: `alert`. */
  on_drift?: OnDrift;
  /**
   * Which of the partner's `acr` values stand for which of Clearance's levels, and the most it is
   * trusted to assert (src/federation/upstream/acr-trust.ts): its subjects' tokens then carry the level, their
   * `amr` where believed, and the partner as their source of assurance. Absent: no acr is carried.
   */
  acr?: AcrTrust;
  /**
   * The legal entities (LEIs) the partner speaks for: a subject's mapped `lei` (claim_mapping) is its
   * firm only when listed here — for data residency, at every hop — and one not listed is refused.
   * Absent: no mapped LEI is believed (a partner must not name another firm, the broker's own say).
   */
  legal_entities?: string[];
  /**
   * The partner's CAs for mutual TLS (src/federation/trust-anchors.ts): a client bound to one
   * (`tls_client_auth_trust_anchor: partner:<id>/<name>`) authenticates only with a certificate whose
   * chain ends at it. Absent: none.
   */
  trust_anchors?: PartnerTrustAnchor[];
  /** How certificates under those anchors are checked for revocation; absent: hard fail, OCSP then CRL (partnerRevocation). */
  revocation?: Partial<PartnerRevocation>;
  /**
   * Identity chaining (src/federation/chaining.ts): Clearance issues JWT authorization grants aimed
   * at this partner's authorization server, to the clients named here. Absent: none are issued.
   * With it, `allowed_audiences` and `allowed_scopes` may be empty: a partner we only send grants to.
   */
  chaining?: Chaining;
}

export type OnDrift = 'alert' | 'suspend';

/** 15 minutes between drift checks unless the profile says otherwise; never less than a minute. */
export const defaultDriftCheckInterval = 900;
export const minDriftCheckInterval = 60;
export const maxDriftCheckInterval = 86_400;
/** An hour of unreachable keys or metadata is tolerated (the last keys fetched keep verifying). */
export const defaultUnreachableGrace = 3600;
export const maxUnreachableGrace = 7 * 86_400;

/** A profile's drift settings with their defaults. */
export function driftSettings(partner: Partner): { interval: number; grace: number; onDrift: OnDrift } {
  return {
    interval: partner.drift_check_interval ?? defaultDriftCheckInterval,
    grace: partner.unreachable_grace ?? defaultUnreachableGrace,
    onDrift: partner.on_drift ?? 'alert',
  };
}

export const defaultMaxAssertionLifetime = 300;
export const maxMaxAssertionLifetime = 3600;

const fields = [
  'id',
  'name',
  'issuer',
  'jwks',
  'jwks_uri',
  'algorithms',
  'max_assertion_lifetime',
  'required_claims',
  'claim_mapping',
  'allowed_audiences',
  'allowed_scopes',
  'accept_id_tokens',
  'allow_private_network',
  'clients',
  'drift_check_interval',
  'unreachable_grace',
  'on_drift',
  'acr',
  'legal_entities',
  'trust_anchors',
  'revocation',
  'chaining',
] as const;

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const attributePattern = /^[a-z][a-z0-9_]{0,63}$/;
const scopePattern = /^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$/;

/**
 * Validates one `partners[]` entry of an apply document, applying defaults. Cross-references
 * (audiences, scopes, clients, issuers of other partners) are checked by planPartners.
 */
export function readPartner(v: Validator, path: string, input: unknown): Partner | undefined {
  const object = v.object(path, input);
  if (!object) return undefined;
  v.knownKeys(path, object, fields);
  const before = v.problems.length;
  const at = (field: string) => join(path, field);
  const id = v.string(at('id'), object.id, { pattern: idPattern, patternMessage: 'must be 1-64 letters, digits and ._- (starting with a letter or digit)' });
  const name = object.name === undefined ? undefined : v.string(at('name'), object.name, { maxLength: 200 });
  const issuer = readHttpsUrl(v, at('issuer'), object.issuer, { issuer: true });
  let jwks: Partner['jwks'];
  let jwksUri: string | undefined;
  if (object.jwks !== undefined && object.jwks_uri !== undefined) {
    v.fail(at('jwks'), 'must not be given together with jwks_uri (exactly one of them)');
  } else if (object.jwks !== undefined) {
    jwks = readJwks(v, at('jwks'), object.jwks);
  } else if (object.jwks_uri !== undefined) {
    jwksUri = readHttpsUrl(v, at('jwks_uri'), object.jwks_uri, { issuer: false });
  } else {
    v.fail(at('jwks'), 'is required (or jwks_uri): the keys the partner signs with');
  }
  const algorithms = v.array(at('algorithms'), object.algorithms, (p, a) => readAlgorithm(v, p, a), { nonEmpty: true, unique: true });
  const lifetime =
    object.max_assertion_lifetime === undefined
      ? defaultMaxAssertionLifetime
      : v.integer(at('max_assertion_lifetime'), object.max_assertion_lifetime, { min: 1, max: maxMaxAssertionLifetime });
  const required =
    object.required_claims === undefined
      ? []
      : v.array(at('required_claims'), object.required_claims, (p, c) => v.string(p, c, { maxLength: 200 }), { unique: true });
  const mapping = object.claim_mapping === undefined ? {} : readClaimMapping(v, at('claim_mapping'), object.claim_mapping);
  // A profile that only sends grants to the partner (chaining) may accept nothing from it.
  const outboundOnly = object.chaining !== undefined;
  const audiences = v.array(at('allowed_audiences'), object.allowed_audiences, (p, a) => v.string(p, a, { maxLength: 2000 }), {
    nonEmpty: !outboundOnly,
    unique: true,
  });
  const scopes = v.array(
    at('allowed_scopes'),
    object.allowed_scopes,
    (p, s) => v.string(p, s, { pattern: scopePattern, patternMessage: 'must be a business verb scope such as order:create' }),
    { nonEmpty: !outboundOnly, unique: true },
  );
  const acceptIdTokens = object.accept_id_tokens === undefined ? false : v.boolean(at('accept_id_tokens'), object.accept_id_tokens);
  const allowPrivate = object.allow_private_network === undefined ? false : v.boolean(at('allow_private_network'), object.allow_private_network);
  const clients =
    object.clients === undefined
      ? undefined
      : v.array(at('clients'), object.clients, (p, c) => v.string(p, c, { maxLength: 128 }), { nonEmpty: true, unique: true });
  // Absent drift settings stay absent (defaults at use, driftSettings): stored profiles are unchanged.
  const driftInterval =
    object.drift_check_interval === undefined
      ? undefined
      : v.integer(at('drift_check_interval'), object.drift_check_interval, { min: minDriftCheckInterval, max: maxDriftCheckInterval });
  const grace = object.unreachable_grace === undefined ? undefined : v.integer(at('unreachable_grace'), object.unreachable_grace, { min: 0, max: maxUnreachableGrace });
  const onDrift = object.on_drift === undefined ? undefined : (v.string(at('on_drift'), object.on_drift, { oneOf: ['alert', 'suspend'] }) as OnDrift | undefined);
  const acrTrust = object.acr === undefined ? undefined : readAcrTrust(v, at('acr'), object.acr);
  const leis =
    object.legal_entities === undefined
      ? undefined
      : v.array(at('legal_entities'), object.legal_entities, (p, l) => (typeof l === 'string' && isValidLei(l) ? l : v.fail(p, 'must be a valid LEI (ISO 17442)')), { nonEmpty: true, unique: true });
  const chaining = object.chaining === undefined ? undefined : readChaining(v, at('chaining'), object.chaining, (p, url) => readHttpsUrl(v, p, url, { issuer: true }));
  const certificateTrust = readPartnerCertificateTrust(v, path, object);
  // Inline keys are known now: an allowlist that none of them can verify would refuse every token.
  if (jwks && algorithms) {
    const usable = jwks.keys.flatMap((jwk) => {
      const imported = importPartnerKey(jwk);
      return 'key' in imported ? imported.key.algorithms : [];
    });
    if (!algorithms.some((alg) => usable.includes(alg))) {
      v.fail(at('algorithms'), `allows none of the algorithms the jwks keys verify (${[...new Set(usable)].join(', ')})`);
    }
  }
  // Plain http reaches only this machine, and only for a profile that allows the private network.
  for (const [field, url] of [['issuer', issuer], ['jwks_uri', jwksUri], ['chaining.audience', chaining?.audience]] as const) {
    if (url && new URL(url).protocol === 'http:' && allowPrivate === false) {
      v.fail(at(field), 'may be http only with allow_private_network: true (a loopback partner, for development and tests)');
    }
  }
  if (
    v.problems.length !== before ||
    !id ||
    !issuer ||
    !algorithms ||
    lifetime === undefined ||
    !required ||
    !mapping ||
    !audiences ||
    !scopes ||
    acceptIdTokens === undefined ||
    allowPrivate === undefined
  ) {
    return undefined;
  }
  return {
    id,
    ...(name === undefined ? {} : { name }),
    issuer,
    ...(jwks ? { jwks } : {}),
    ...(jwksUri ? { jwks_uri: jwksUri } : {}),
    algorithms,
    max_assertion_lifetime: lifetime,
    required_claims: required,
    claim_mapping: mapping,
    allowed_audiences: audiences,
    allowed_scopes: scopes,
    accept_id_tokens: acceptIdTokens,
    allow_private_network: allowPrivate,
    ...(clients === undefined ? {} : { clients }),
    ...(driftInterval === undefined ? {} : { drift_check_interval: driftInterval }),
    ...(grace === undefined ? {} : { unreachable_grace: grace }),
    ...(onDrift === undefined ? {} : { on_drift: onDrift }),
    ...(acrTrust === undefined ? {} : { acr: acrTrust }),
    ...(leis === undefined ? {} : { legal_entities: leis }),
    ...certificateTrust,
    ...(chaining === undefined ? {} : { chaining }),
  };
}

function readAlgorithm(v: Validator, path: string, value: unknown): PartnerAlg | undefined {
  if (typeof value === 'string' && value.toLowerCase() === 'none') return v.fail(path, '"none" is never accepted (RFC 8725 §3.1)');
  if (typeof value === 'string' && /^HS\d+$/i.test(value)) {
    return v.fail(path, `${value} is symmetric; a partner's tokens are verified with its public keys only (RFC 8725 §3.1)`);
  }
  return v.string(path, value, { oneOf: partnerAlgorithms }) as PartnerAlg | undefined;
}

/**
 * An issuer or jwks_uri: an absolute https URL (http only for a loopback host), no credentials;
 * an issuer also without query or fragment (RFC 8414 §2).
 */
export function readHttpsUrl(v: Validator, path: string, value: unknown, rules: { issuer: boolean }): string | undefined {
  const text = v.string(path, value, { maxLength: 2000 });
  if (!text) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return v.fail(path, 'must be an absolute URL');
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) return v.fail(path, 'must be https (http only for loopback hosts)');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return v.fail(path, 'must be https');
  if (url.username || url.password) return v.fail(path, 'must not contain credentials');
  if (text.includes('#')) return v.fail(path, 'must not contain a fragment');
  if (rules.issuer && url.search) return v.fail(path, 'must not contain a query (RFC 8414 §2)');
  return text;
}

/** Reads a JWK Set of public signing keys (a partner's; a KYC provider's, src/risk/kyc/providers.ts). */
export function readJwks(v: Validator, path: string, value: unknown): { keys: Record<string, unknown>[] } | undefined {
  const object = v.object(path, value);
  if (!object) return undefined;
  v.knownKeys(path, object, ['keys']);
  const kids = new Map<string, number>();
  const keys = v.array(
    join(path, 'keys'),
    object.keys,
    (p, jwk) => {
      const imported = importPartnerKey(jwk);
      if ('error' in imported) return v.fail(p, `must be a public signing key: it ${imported.error}`);
      if (imported.key.algorithms.length === 0) return v.fail(p, 'is not usable for signatures (use, key_ops or alg)');
      const kid = imported.key.kid;
      if (kid !== undefined) {
        if (kids.has(kid)) return v.fail(join(p, 'kid'), `"${kid}" is also the kid of keys[${kids.get(kid)}]`);
        kids.set(kid, Number(/\[(\d+)\]$/.exec(p)?.[1]));
      }
      return jwk as Record<string, unknown>;
    },
    { nonEmpty: true },
  );
  return keys ? { keys } : undefined;
}

function readClaimMapping(v: Validator, path: string, value: unknown): Record<string, string> | undefined {
  const object = v.object(path, value);
  if (!object) return undefined;
  const before = v.problems.length;
  const mapping: Record<string, string> = {};
  for (const [attribute, claim] of Object.entries(object)) {
    if (!attributePattern.test(attribute)) {
      v.fail(join(path, attribute), 'is not a valid local attribute name (lowercase letters, digits and _, starting with a letter)');
      continue;
    }
    const name = v.string(join(path, attribute), claim, { maxLength: 200 });
    if (name) mapping[attribute] = name;
  }
  return v.problems.length === before ? mapping : undefined;
}
