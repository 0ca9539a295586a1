import { epochSeconds } from '../clock.ts';
import { decodeCompactJws, mediaType, sameAlgorithm, verifyCompactSignature } from '../jose/index.ts';
import type { Context } from '../context.ts';
import type { Partner } from './definition.ts';
import type { PartnerAlg, PartnerKey } from './keys.ts';
import { hasControlCharacter } from '../parameters.ts';

/**
 * The kinds of partner JWT Clearance accepts, named by their RFC 8693 §3 token type URIs:
 * `urn:ietf:params:oauth:token-type:access_token`, `...:id_token` and `...:jwt` (the last also
 * for RFC 7523 §2.1 authorization grant assertions).
 */
export type PartnerTokenKind = 'access_token' | 'id_token' | 'jwt';

/** RFC 8693 §3: the token type URI of each kind. */
export const partnerTokenTypeUris: Record<PartnerTokenKind, string> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

/** The kind a token type URI names, or undefined for one that is not a partner JWT kind. */
export function partnerTokenKind(tokenTypeUri: string): PartnerTokenKind | undefined {
  return (Object.keys(partnerTokenTypeUris) as PartnerTokenKind[]).find((kind) => partnerTokenTypeUris[kind] === tokenTypeUri);
}

/** A partner JWT that passed every rule of its profile. */
export interface VerifiedPartnerToken {
  /** The profile that accepted it (`.id`, `.issuer`, `.allowed_audiences`, `.allowed_scopes`, ...). */
  partner: Partner;
  /** The verified payload. */
  claims: Record<string, unknown>;
  /** Its `sub`. */
  subject: string;
  /** Local attributes from the profile's claim_mapping, e.g. `{ lei: '...', desk: '...' }`. */
  attributes: Record<string, string>;
  kind: PartnerTokenKind;
  /** Its `exp`, in seconds since the epoch: nothing issued from it should outlive it. */
  expiresAt: number;
  /** Its `jti`, when it has one (always, and consumed, with `singleUse`). */
  jti?: string;
  /** The `kid` of the key that verified it, when the key has one. */
  kid?: string;
}

/** The `aud` values a partner's token or assertion may name to be for us: our issuer and our token endpoint (RFC 7523 §3 (3)). */
export function partnerAudiences(issuer: string): string[] {
  return [issuer, `${issuer}/token`];
}

/** What the caller expects of the token. */
export interface PartnerTokenExpectation {
  kind: PartnerTokenKind;
  /** Acceptable `aud` values: our issuer and our token endpoint URL. */
  audiences: string[];
  /** JWT bearer assertions (RFC 7523 §3 (7)): a `jti` is required and may be used once. */
  singleUse?: boolean;
  /** The authenticated client presenting the token: refused unless the profile's `clients` (when set) lists it. */
  clientId?: string;
}

/** `suspended`: the partner is suspended by a drift (src/federation/drift): the grants answer invalid_grant and record the refusal. */
export type VerifyPartnerTokenResult = { ok: true; token: VerifiedPartnerToken } | { ok: false; reason: string; partner?: Partner; suspended?: true };

export type PartnerVerifyDeps = Pick<Context, 'partners' | 'clock'>;

/** Largest token accepted, in bytes; larger is refused before any parsing. */
export const maxPartnerTokenBytes = 16 * 1024;
/** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. */
export const partnerClockSkewSeconds = 60;
/** Longest `jti` accepted (it becomes part of a database key). */
export const maxJtiLength = 256;

/**
 * Verifies a JWT from a federated partner against the partner's trust profile (docs/federation.md).
 * The rules, in order (the `rules` array below, by name):
 * 1. format: a compact JWS of at most 16 KiB;
 * 2. issuer: the partner selected by its exact `iss`;
 * 3. client: the profile's `clients`, when set, lists the presenting client (`expect.clientId`);
 * 4. algorithm: from the profile's allowlist (never `none`, never HMAC);
 * 5. header: no `crit`, `b64` or `zip`; embedded `jwk`/`x5c`/`jku`/`x5u`/`x5t`(`#S256`) ignored;
 * 6. token type: the kind's `typ` rule, and no claim of an ID token (unless one is expected) or of
 *    another kind of JWT (cross-JWT confusion, RFC 8725 §3.11-3.12);
 * 7. key: found by `kid` in the partner's key set (an unknown kid refreshes a jwks_uri once,
 *    rate-limited), fit for the algorithm;
 * 8. signature;
 * 9. subject: `sub`;
 * 10. expiry: `exp` required, not passed; 11. issued at: `iat` required, not in the future;
 * 12. not before: `nbf`, when present, reached — each of the three with 60 s of clock skew;
 * 13. lifetime: `exp - iat` within the profile's `max_assertion_lifetime`;
 * 14. audience: `aud` among `expect.audiences`;
 * 15. required claims; 16. claim mapping;
 * 17. jti: with `singleUse`, a `jti` recorded once.
 * The same numbering as docs/federation.md ("Verification rules"). Never throws for bad input:
 * the first broken rule is the `reason`.
 */
export async function verifyPartnerToken(ctx: PartnerVerifyDeps, token: string, expect: PartnerTokenExpectation): Promise<VerifyPartnerTokenResult> {
  const state: State = { token };
  for (const rule of rules) {
    const outcome = await rule.check(state, ctx, expect, 'verify');
    if (!outcome.ok) return { ok: false, reason: outcome.reason, ...(state.partner ? { partner: state.partner } : {}), ...(state.suspended ? { suspended: true as const } : {}) };
  }
  const claims = state.claims!;
  return {
    ok: true,
    token: {
      partner: state.partner!,
      claims,
      subject: claims.sub as string,
      attributes: state.attributes!,
      kind: expect.kind,
      expiresAt: claims.exp as number,
      ...(typeof claims.jti === 'string' ? { jti: claims.jti } : {}),
      ...(state.key?.kid !== undefined ? { kid: state.key.kid } : {}),
    },
  };
}

/** One rule's outcome in `explainPartnerToken`. */
export interface RuleReport {
  rule: string;
  status: 'pass' | 'fail' | 'skip';
  detail: string;
}

/**
 * Checks a token against one given partner's profile and reports every rule, for `clearance
 * partner check --assertion`: rules go on after a failure wherever they can (claims are then read
 * unverified), and a `jti` is checked but never recorded.
 */
export async function explainPartnerToken(
  ctx: PartnerVerifyDeps,
  partner: Partner,
  token: string,
  expect: PartnerTokenExpectation,
): Promise<RuleReport[]> {
  const state: State = { token, partner };
  const reports: RuleReport[] = [];
  for (const rule of rules) {
    const missing = rule.needs.find((need) => state[need] === undefined);
    if (missing) {
      reports.push({ rule: rule.name, status: 'skip', detail: `needs ${needNames[missing]}` });
      continue;
    }
    const outcome = await rule.check(state, ctx, expect, 'explain');
    reports.push(outcome.ok ? { rule: rule.name, status: 'pass', detail: outcome.detail } : { rule: rule.name, status: 'fail', detail: outcome.reason });
  }
  return reports;
}

interface State {
  token: string;
  header?: Record<string, unknown>;
  /** Parsed from the token; unverified until the signature rule passes (the verify path stops before). */
  claims?: Record<string, unknown>;
  partner?: Partner;
  alg?: PartnerAlg;
  candidates?: PartnerKey[];
  key?: PartnerKey;
  attributes?: Record<string, string>;
  /** Set when the issuer rule found the partner suspended by a drift. */
  suspended?: true;
}

const needNames: Record<keyof State, string> = {
  token: 'the token',
  header: 'a parsed header',
  claims: 'parsed claims',
  partner: 'the partner',
  alg: 'an allowed algorithm',
  candidates: 'a key',
  key: 'a verified signature',
  attributes: 'the claim mapping',
  suspended: 'a suspended partner',
};

type Outcome = { ok: true; detail: string } | { ok: false; reason: string };
const pass = (detail: string): Outcome => ({ ok: true, detail });
const fail = (reason: string): Outcome => ({ ok: false, reason });

interface Rule {
  name: string;
  /** What earlier rules must have established (explain mode skips the rule otherwise). */
  needs: (keyof State)[];
  check(state: State, ctx: PartnerVerifyDeps, expect: PartnerTokenExpectation, mode: 'verify' | 'explain'): Outcome | Promise<Outcome>;
}

/** Claims only an ID token carries (OIDC Core §2, §3.1.3.6, §3.3.2.11). */
const idTokenClaims = ['nonce', 'at_hash', 'c_hash', 's_hash'];
/** Claims of JWTs made for another purpose: DPoP proofs, request objects, security event and logout tokens. */
const foreignClaims = ['htm', 'htu', 'ath', 'response_type', 'redirect_uri', 'events'];
/** Header members that carry or point to keys: never used, never fetched (RFC 8725 §3.10). */
const ignoredKeyHeaders = ['jwk', 'x5c', 'jku', 'x5u', 'x5t', 'x5t#S256'];

const noun: Record<PartnerTokenKind, string> = { access_token: 'access token', id_token: 'ID token', jwt: 'assertion' };

const isTime = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');

const rules: Rule[] = [
  {
    // RFC 7515 §7.1 and RFC 8725 §3.3 (and 8725bis): a compact JWS and nothing else.
    name: 'format',
    needs: [],
    check(state) {
      // src/jose: at most 16 KiB, compact only, no JWE, three canonical base64url segments, JSON objects.
      const decoded = decodeCompactJws(state.token, { maxBytes: maxPartnerTokenBytes });
      if (!decoded.ok) return fail(decoded.reason);
      const { header, claims } = decoded.jws;
      const bytes = Buffer.byteLength(state.token, 'utf8');
      state.header = header;
      state.claims = claims;
      return pass(`compact JWS, ${bytes} bytes`);
    },
  },
  {
    // The partner is selected by `iss`, compared exactly (RFC 7523 §3 (1); OIDC Core §3.1.3.7 (2)).
    name: 'issuer',
    needs: ['claims'],
    async check(state, ctx) {
      const iss = state.claims!.iss;
      if (iss === undefined) return fail('missing iss');
      if (typeof iss !== 'string') return fail('iss is not a string');
      if (!state.partner) {
        const partner = await ctx.partners.byIssuer(iss);
        if (!partner) return fail(`issuer ${iss} is not a registered partner`);
        state.partner = partner;
      }
      if (iss !== state.partner.issuer) return fail(`issuer ${iss} is not partner ${state.partner.id}'s issuer ${state.partner.issuer}`);
      // A drift under `on_drift: suspend` (src/federation/drift): refused until an operator re-approves.
      // The status comes with the loaded profiles: no query of its own.
      const suspension = await ctx.partners.suspension(state.partner.id);
      if (suspension) {
        state.suspended = true;
        return fail(`partner ${state.partner.id} is suspended since ${new Date(suspension.since).toISOString()} (${suspension.reason}) until an operator re-approves it`);
      }
      return pass(`iss ${iss}`);
    },
  },
  {
    name: 'client',
    needs: ['partner'],
    check(state, _ctx, expect) {
      const partner = state.partner!;
      if (!partner.clients) return pass('any authenticated client may present this partner\'s tokens');
      if (expect.clientId === undefined) return pass(`limited to ${partner.clients.join(', ')}`);
      if (!partner.clients.includes(expect.clientId)) return fail(`client ${expect.clientId} may not present tokens of partner ${partner.id}`);
      return pass(`client ${expect.clientId} is allowed`);
    },
  },
  {
    // RFC 8725 §2.1, §3.1: the algorithm comes from the profile's allowlist; never none, never HMAC.
    name: 'algorithm',
    needs: ['header', 'partner'],
    check(state) {
      const { alg } = state.header!;
      const partner = state.partner!;
      if (typeof alg !== 'string' || alg === '') return fail('the header has no alg');
      if (alg.toLowerCase() === 'none') return fail(`algorithm ${alg} is never accepted (RFC 8725 §3.1)`);
      if (/^hs\d*$/i.test(alg)) return fail(`algorithm ${alg} is not allowed for partner ${partner.id} (symmetric algorithms are never accepted)`);
      // EdDSA and Ed25519 are one algorithm for an Ed25519 key (RFC 9864 §2.2): a profile naming one allows both.
      if (!partner.algorithms.some((allowed) => sameAlgorithm(allowed, alg))) {
        return fail(`algorithm ${alg} is not allowed for partner ${partner.id} (allowed: ${partner.algorithms.join(', ')})`);
      }
      state.alg = alg as PartnerAlg;
      return pass(alg);
    },
  },
  {
    // RFC 7515 §4.1.11: an extension we do not implement in `crit` must be refused; RFC 7797
    // unencoded payloads and compressed JWS are never expected. Key-carrying headers are ignored.
    name: 'header',
    needs: ['header'],
    check(state) {
      const header = state.header!;
      if (header.crit !== undefined) return fail(`the header has crit (${JSON.stringify(header.crit)}), which is not supported`);
      if (header.b64 !== undefined) return fail('the header has b64 (RFC 7797), which is not supported');
      if (header.zip !== undefined) return fail('the header has zip; compressed tokens are not accepted');
      const ignored = ignoredKeyHeaders.filter((name) => header[name] !== undefined);
      return pass(ignored.length ? `ignored ${ignored.join(', ')} (keys come only from the profile)` : 'no unsupported members');
    },
  },
  {
    // Cross-JWT confusion (RFC 8725 §3.11-3.12), by typ and by claims; the rule is in docs/federation.md.
    name: 'token type',
    needs: ['header', 'claims', 'partner'],
    check(state, _ctx, expect) {
      const partner = state.partner!;
      const claims = state.claims!;
      const typ = mediaType(state.header!.typ);
      const shown = state.header!.typ === undefined ? 'no typ' : `typ ${JSON.stringify(state.header!.typ)}`;
      if (state.header!.typ !== undefined && typ === undefined) return fail('typ is not a string');
      switch (expect.kind) {
        case 'access_token':
          // RFC 9068 §2.1, §4: a JWT access token is typed at+jwt, and the type is checked.
          if (typ !== 'at+jwt') return fail(`an access token must have typ at+jwt (RFC 9068 §4); this one has ${shown}`);
          break;
        case 'id_token':
          if (!partner.accept_id_tokens) return fail(`partner ${partner.id} does not accept ID tokens (accept_id_tokens is false)`);
          if (typ !== undefined && typ !== 'jwt') return fail(`an ID token has typ JWT or none; this one has ${shown} (cross-JWT confusion, RFC 8725 §3.11)`);
          break;
        case 'jwt':
          if (typ !== undefined && typ !== 'jwt') return fail(`a JWT assertion has typ JWT or none; this one has ${shown} (cross-JWT confusion, RFC 8725 §3.11)`);
          break;
      }
      if (expect.kind !== 'id_token') {
        const marker = idTokenClaims.find((claim) => claim in claims);
        if (marker) return fail(`the token has a "${marker}" claim: it is an ID token, not ${expect.kind === 'jwt' ? 'a JWT assertion' : 'an access token'} (RFC 8725 §3.12)`);
      }
      const foreign = foreignClaims.find((claim) => claim in claims);
      if (foreign) return fail(`the token has a "${foreign}" claim: a JWT of another kind (RFC 8725 §3.12)`);
      return pass(`${noun[expect.kind]}, ${shown}`);
    },
  },
  {
    // RFC 8725 §3.10: a kid is an opaque lookup key among the partner's own keys; an unknown one
    // refreshes a jwks_uri once (rate-limited by PartnerKeys).
    name: 'key',
    needs: ['header', 'partner', 'alg'],
    async check(state, ctx) {
      const partner = state.partner!;
      const alg = state.alg!;
      const { kid } = state.header!;
      if (kid !== undefined && (typeof kid !== 'string' || kid === '' || kid.length > 256)) return fail('kid is not a string of 1-256 characters');
      let set = await ctx.partners.keys.get(partner);
      if ('error' in set) return fail(set.error);
      let named = kid === undefined ? set.keys : set.keys.filter((k) => k.kid === kid);
      let refreshNote = '';
      if (kid !== undefined && named.length === 0 && partner.jwks_uri) {
        const refreshed = await ctx.partners.keys.get(partner, { refresh: true });
        if ('error' in refreshed) return fail(refreshed.error);
        set = refreshed;
        named = set.keys.filter((k) => k.kid === kid);
        refreshNote = set.fetched ? ' (jwks_uri refetched)' : ' (jwks_uri was fetched moments ago; not refetched)';
      }
      if (named.length === 0) return fail(`key ${JSON.stringify(kid)} is not among partner ${partner.id}'s keys${refreshNote}`);
      const candidates = named.filter((k) => k.algorithms.includes(alg));
      if (candidates.length === 0) {
        return fail(kid === undefined ? `partner ${partner.id} has no key for ${alg}` : `key ${JSON.stringify(kid)} of partner ${partner.id} is an ${named[0]!.type} key; it does not verify ${alg}`);
      }
      state.candidates = candidates;
      return pass(kid === undefined ? `no kid; ${candidates.length} ${alg} key(s) from ${set.source}` : `kid ${kid} from ${set.source}`);
    },
  },
  {
    // RFC 7515 §5.2 (src/jose), the algorithm pinned to the one the profile allowed and the key fits.
    name: 'signature',
    needs: ['candidates', 'alg'],
    check(state) {
      for (const candidate of state.candidates!) {
        if (verifyCompactSignature(state.alg!, candidate.key, state.token)) {
          state.key = candidate;
          return pass(`verified (${state.alg}${candidate.kid === undefined ? '' : `, kid ${candidate.kid}`})`);
        }
      }
      const partner = state.partner!;
      const which = state.candidates!.length === 1 && state.candidates![0]!.kid !== undefined ? `key ${state.candidates![0]!.kid}` : `any of its ${state.candidates!.length} ${state.alg} keys`;
      return fail(`the signature does not verify with partner ${partner.id}'s ${which}`);
    },
  },
  {
    name: 'subject',
    needs: ['claims'],
    check(state) {
      const { sub } = state.claims!;
      if (sub === undefined) return fail('missing sub');
      if (typeof sub !== 'string' || sub === '' || sub.length > 1024) return fail('sub is not a string of 1-1024 characters');
      // It becomes a token's sub and an audit column: no control characters (NUL is a 500 on PostgreSQL).
      if (hasControlCharacter(sub)) return fail('sub contains a control character');
      return pass(`sub ${sub}`);
    },
  },
  {
    // RFC 7523 §3 (4): exp is required; RFC 7519 §4.1.4: not on or after it.
    name: 'expiry',
    needs: ['claims'],
    check(state, ctx) {
      const { exp } = state.claims!;
      if (exp === undefined) return fail('missing exp');
      if (!isTime(exp)) return fail('exp is not a number');
      const now = epochSeconds(ctx.clock);
      if (exp <= now - partnerClockSkewSeconds) return fail(`the token expired at ${iso(exp)}, ${now - exp} s ago (${partnerClockSkewSeconds} s skew allowed)`);
      return pass(`expires at ${iso(exp)}, in ${exp - now} s`);
    },
  },
  {
    // RFC 7519 §4.1.6; required here so the lifetime can be bounded.
    name: 'issued at',
    needs: ['claims'],
    check(state, ctx) {
      const { iat } = state.claims!;
      if (iat === undefined) return fail('missing iat');
      if (!isTime(iat)) return fail('iat is not a number');
      const now = epochSeconds(ctx.clock);
      if (iat > now + partnerClockSkewSeconds) return fail(`iat is ${iat - now} s in the future (${partnerClockSkewSeconds} s skew allowed)`);
      return pass(`issued at ${iso(iat)}`);
    },
  },
  {
    // RFC 7519 §4.1.5.
    name: 'not before',
    needs: ['claims'],
    check(state, ctx) {
      const { nbf } = state.claims!;
      if (nbf === undefined) return pass('no nbf');
      if (!isTime(nbf)) return fail('nbf is not a number');
      const now = epochSeconds(ctx.clock);
      if (nbf > now + partnerClockSkewSeconds) return fail(`the token is not valid before ${iso(nbf)}, ${nbf - now} s from now`);
      return pass(`valid from ${iso(nbf)}`);
    },
  },
  {
    name: 'lifetime',
    needs: ['claims', 'partner'],
    check(state, _ctx, expect) {
      const { exp, iat } = state.claims!;
      if (!isTime(exp) || !isTime(iat)) return fail('needs numeric exp and iat');
      const max = state.partner!.max_assertion_lifetime;
      const lifetime = exp - iat;
      if (lifetime <= 0) return fail(`exp is not after iat`);
      if (lifetime > max) return fail(`${noun[expect.kind]} lifetime ${lifetime} s exceeds the profile's ${max} s`);
      return pass(`${lifetime} s (at most ${max} s)`);
    },
  },
  {
    // RFC 7523 §3 (3), RFC 7519 §4.1.3: aud must contain a value that identifies us.
    name: 'audience',
    needs: ['claims'],
    check(state, _ctx, expect) {
      const { aud } = state.claims!;
      if (aud === undefined) return fail('missing aud');
      const values = Array.isArray(aud) ? aud : [aud];
      if (values.length === 0 || values.some((a) => typeof a !== 'string')) return fail('aud is not a string or an array of strings');
      const match = (values as string[]).find((a) => expect.audiences.includes(a));
      if (!match) return fail(`audience ${(values as string[]).join(', ')} is not ours (expected one of ${expect.audiences.join(', ')})`);
      return pass(`aud ${match}`);
    },
  },
  {
    name: 'required claims',
    needs: ['claims', 'partner'],
    check(state) {
      const claims = state.claims!;
      const required = state.partner!.required_claims;
      const missing = required.filter((name) => claims[name] === undefined || claims[name] === null);
      if (missing.length === 1) return fail(`missing required claim ${missing[0]}`);
      if (missing.length > 1) return fail(`missing required claims ${missing.join(', ')}`);
      return pass(required.length ? required.join(', ') : 'none required');
    },
  },
  {
    // A mapped claim that is present must be a string; an absent one is left out (list it in
    // required_claims to require it).
    name: 'claim mapping',
    needs: ['claims', 'partner'],
    check(state) {
      const claims = state.claims!;
      const attributes: Record<string, string> = {};
      for (const [attribute, claim] of Object.entries(state.partner!.claim_mapping)) {
        const value = claims[claim];
        if (value === undefined || value === null) continue;
        if (typeof value !== 'string') return fail(`claim ${claim} (mapped to ${attribute}) is not a string`);
        attributes[attribute] = value;
      }
      state.attributes = attributes;
      const names = Object.keys(attributes);
      return pass(names.length ? `attributes ${names.join(', ')}` : 'no attributes mapped');
    },
  },
  {
    // RFC 7523 §3 (7): an assertion's jti is used once; remembered in the shared replay cache
    // until the assertion could no longer pass the exp rule.
    name: 'jti',
    needs: ['claims', 'partner'],
    async check(state, ctx, expect, mode) {
      const { jti, exp } = state.claims!;
      if (!expect.singleUse) return pass(jti === undefined ? 'not single-use' : 'not single-use (jti not recorded)');
      if (jti === undefined) return fail('missing jti (an assertion must have one, RFC 7523 §3)');
      if (typeof jti !== 'string' || jti === '' || jti.length > maxJtiLength) return fail(`jti is not a string of 1-${maxJtiLength} characters`);
      // It becomes part of a database key.
      if (hasControlCharacter(jti)) return fail('jti contains a control character');
      if (mode === 'explain') return pass(`jti ${jti} (checked, not recorded)`);
      const partner = state.partner!;
      const fresh = await ctx.partners.replay.use(`partner_assertion:${partner.id}:${jti}`, ((exp as number) + partnerClockSkewSeconds) * 1000);
      if (!fresh) return fail(`jti ${jti} of partner ${partner.id} was already used`);
      return pass(`jti ${jti} recorded`);
    },
  },
];
