import { createHash } from 'node:crypto';
import { jwtVerify, type JSONWebKeySet } from 'jose';
import { OldestFirst } from '../jose/bounded-map.ts';
import { MemoryDpopReplayStore, safeEqual, type DpopReplayStore } from './dpop.ts';
import { checkedUrl, defaultAlgorithms, keyResolver, KeySourceUnavailable, type AccessTokenClaims } from './token.ts';

/**
 * The guard as a Shared Signals receiver (OpenID SSF 1.0, RFC 8935 push; docs/signals.md "The
 * guard as a receiver"). Clearance pushes Security Event Tokens to the resource server; the
 * receiver verifies each (RFC 8417: typ `secevent+jwt`, signed by the transmitter's published
 * keys, `iss` the transmitter, `aud` this receiver, `jti`, `iat`, `events`) and the push's
 * Authorization header, then acts on it:
 * - CAEP `session-revoked` about a person: every token of theirs issued up to the event is refused
 *   from now on; about one session (the `session` member of a complex subject, an `opaque` id): the
 *   tokens naming it — as their grant (`grant_id`: consent withdrawn, a grant revoked), their
 *   refresh family (`refresh_family`: one refresh token revoked, that device only, RFC 7009 §2.1)
 *   or their `jti` — are;
 * - CAEP `token-claims-change`: the subject's tokens issued up to the change are refused (their
 *   claims — e.g. the mandate version — are no longer what the issuer would say);
 * - RISC `account-disabled`, `account-purged`: like a session revoked for the person.
 * What the guard accepted before is thereby dropped, without asking Clearance on every request.
 * Each SET is acted on once: its `jti` is remembered (`replay`) for `maxAgeSeconds` after its `iat`,
 * and a SET issued longer ago than that, or ahead of this clock by more than `clockSkewSeconds`, is
 * refused — its `jti` could not be told from a new one's.
 * Answers (RFC 8935 §2.2, §2.3): 202 accepted — a SET already acted on too, without acting again;
 * 400 `{err, description}` with `invalid_request`, `invalid_key`, `invalid_issuer`,
 * `invalid_audience`; 401 `authentication_failed` for a push without the agreed Authorization
 * header; 503 when the `replay` store fails (the transmitter retries). Each event acted on is handed
 * to `onEvent` too.
 */
export interface SsfReceiverOptions {
  /** The transmitter's issuer (Clearance's), as SETs carry it in `iss`. */
  issuer: string;
  /** This receiver's `aud`: the client id that made the stream. */
  audience: string;
  /** The transmitter's JWKS (default: discovered from the issuer, as the guard does). */
  jwksUri?: string;
  jwks?: JSONWebKeySet;
  /** The Authorization header value given at stream creation (`delivery.authorization_header`); required of every push when set. */
  authorization?: string;
  /** Where revoked subjects, grants and tokens are kept; pass the same one to createGuard. */
  revocations: SecurityEventRevocations;
  allowHttp?: boolean;
  /**
   * The oldest SET taken, in seconds since its `iat`; its `jti` is remembered that long. Default
   * 90,000 (a day and an hour): Clearance retries a push for CLEARANCE_SSF_MAX_DELIVERY_AGE (a day)
   * with back-offs of up to 5 minutes, and a SET refused as too old is failed for good (RFC 8935
   * §2.3), so keep it above the transmitter's retry window.
   */
  maxAgeSeconds?: number;
  /** How far ahead of this clock a SET's `iat` may be, in seconds. Default 60. */
  clockSkewSeconds?: number;
  /**
   * Where the `jti`s of the SETs acted on are remembered (`use(key, expiresAt)`, as for DPoP proofs).
   * Default: in memory, this process, 100,000 at most (a full cache answers 503). A
   * `SqliteReplayStore` keeps them across a restart.
   */
  replay?: DpopReplayStore;
  /** Epoch ms (tests). */
  now?: () => number;
  onEvent?: (event: ReceivedSecurityEvent) => void;
}

export interface ReceivedSecurityEvent {
  jti: string;
  type: string;
  subject: Record<string, unknown>;
  payload: Record<string, unknown>;
  txn?: string;
}

export interface SsfReceiverAnswer {
  status: 202 | 400 | 401 | 503;
  body?: { err: string; description: string };
}

export interface SsfReceiver {
  /** One push: the request's headers and its body (the SET). */
  receive(request: { headers: Record<string, string | readonly string[] | undefined>; body: string | Buffer | undefined }): Promise<SsfReceiverAnswer>;
}

const caep = 'https://schemas.openid.net/secevent/caep/event-type/';
const risc = 'https://schemas.openid.net/secevent/risc/event-type/';

export function createSsfReceiver(options: SsfReceiverOptions): SsfReceiver {
  const allowHttp = options.allowHttp ?? false;
  checkedUrl(options.issuer, 'issuer', allowHttp);
  if (typeof options.audience !== 'string' || options.audience.length === 0) throw new TypeError('ssf receiver option audience is required: the client id of the stream');
  const keys = keyResolver({ issuer: options.issuer, jwksUri: options.jwksUri, jwks: options.jwks, allowHttp });
  const now = options.now ?? Date.now;
  const maxAgeSeconds = seconds(options.maxAgeSeconds, 90_000, 'maxAgeSeconds');
  const clockSkewSeconds = seconds(options.clockSkewSeconds, 60, 'clockSkewSeconds');
  const replay = options.replay ?? new MemoryDpopReplayStore({ now });
  const refuse = (err: string, description: string, status: 400 | 401 = 400): SsfReceiverAnswer => ({ status, body: { err, description } });

  return {
    async receive(request) {
      if (options.authorization !== undefined) {
        const given = header(request.headers, 'authorization');
        if (given === undefined || !safeEqual(given, options.authorization)) return refuse('authentication_failed', 'the push did not carry the agreed Authorization header', 401);
      }
      const contentType = header(request.headers, 'content-type');
      if (contentType === undefined || contentType.split(';')[0]!.trim().toLowerCase() !== 'application/secevent+jwt') return refuse('invalid_request', 'the body must be application/secevent+jwt');
      const jwt = typeof request.body === 'string' ? request.body : request.body?.toString('utf8');
      if (!jwt || jwt.length > 64 * 1024) return refuse('invalid_request', 'the body is not a SET');
      let claims: Record<string, unknown>;
      try {
        const verified = await jwtVerify(jwt.trim(), keys, { issuer: options.issuer, audience: options.audience, typ: 'secevent+jwt', algorithms: [...defaultAlgorithms], currentDate: new Date(now()) });
        claims = verified.payload as Record<string, unknown>;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (error instanceof KeySourceUnavailable) return refuse('invalid_key', 'the transmitter keys cannot be fetched now');
        if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
          const claim = (error as { claim?: string }).claim;
          if (claim === 'iss') return refuse('invalid_issuer', 'the SET is not from the expected transmitter');
          if (claim === 'aud') return refuse('invalid_audience', 'the SET is not for this receiver');
        }
        if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return refuse('invalid_key', 'the SET signature does not verify with the transmitter keys');
        return refuse('invalid_request', `the SET is not acceptable: ${(error as Error).message}`);
      }
      const events = claims.events;
      if (typeof claims.jti !== 'string' || typeof claims.iat !== 'number' || typeof events !== 'object' || events === null || Array.isArray(events) || Object.keys(events).length === 0) {
        return refuse('invalid_request', 'a SET needs jti, iat and events (RFC 8417 §2.2)');
      }
      const untimely = iatProblem(claims.iat, now(), maxAgeSeconds, clockSkewSeconds);
      if (untimely) return refuse('invalid_request', untimely);
      // RFC 8417 §2.2: the jti identifies the SET. One already acted on — the transmitter's retry
      // after a lost answer, or a replay — is acknowledged and not acted on again: a session-revoked
      // SET without event_timestamp would revoke, at its replay, the tokens issued since. 202, not
      // 400: the SET is valid (RFC 8935 §2.2), RFC 8935 §2.4 registers no error for a duplicate, and
      // a 400 would have the transmitter fail a SET that was delivered.
      let first: boolean;
      try {
        first = await replay.use(setKey(options.issuer, claims.jti), (claims.iat + maxAgeSeconds) * 1000);
      } catch {
        return { status: 503 };
      }
      if (!first) return { status: 202 };
      const subject = (claims.sub_id ?? {}) as Record<string, unknown>;
      for (const [type, payload] of Object.entries(events as Record<string, unknown>)) {
        const data = (typeof payload === 'object' && payload !== null ? payload : {}) as Record<string, unknown>;
        apply(options.revocations, options.issuer, type, subject, data, Math.floor(now() / 1000));
        options.onEvent?.({ jti: claims.jti, type, subject, payload: data, ...(typeof claims.txn === 'string' ? { txn: claims.txn } : {}) });
      }
      return { status: 202 };
    },
  };
}

/**
 * Why a SET's `iat` (epoch s) is not taken at `nowMs`: ahead of this clock by more than the skew (a
 * SET not yet issued), or older than `maxAge` (its jti, if seen, is forgotten by then: a replay of
 * it could not be told from a first delivery).
 */
function iatProblem(iat: number, nowMs: number, maxAge: number, skew: number): string | undefined {
  const now = nowMs / 1000;
  if (iat > now + skew) return `the SET's iat is more than ${skew} s ahead of this receiver's clock`;
  if (iat < now - maxAge) return `the SET's iat is more than ${maxAge} s ago: older SETs are not taken, their jti no longer remembered`;
  return undefined;
}

/** The replay store's key of a SET: its issuer and jti, hashed (a jti may be long; the store's keys stay short and of one alphabet). */
function setKey(issuer: string, jti: string): string {
  return `ssf-set:${createHash('sha256').update(`${issuer}\n${jti}`).digest('base64url')}`;
}

function seconds(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`ssf receiver option ${name} must be a whole number of seconds, at least 0`);
  return value;
}

/** What an event drops: a person's tokens up to its time, or one session's (a grant, a refresh family, a token). */
function apply(revocations: SecurityEventRevocations, issuer: string, type: string, subject: Record<string, unknown>, payload: Record<string, unknown>, nowSeconds: number): void {
  const at = typeof payload.event_timestamp === 'number' ? payload.event_timestamp : nowSeconds;
  const user = subjectOf(issuer, subject.format === 'complex' ? subject.user : subject);
  const session = subject.format === 'complex' ? (subject.session as Record<string, unknown> | undefined) : undefined;
  switch (type) {
    case `${caep}session-revoked`:
      if (session?.format === 'opaque' && typeof session.id === 'string') revocations.revokeSession(session.id, at);
      else if (user !== undefined) revocations.revokeSubject(user, at);
      return;
    case `${caep}token-claims-change`:
    case `${risc}account-disabled`:
    case `${risc}account-purged`:
      if (user !== undefined) revocations.revokeSubject(user, at);
      return;
    default:
      return;
  }
}

/** The `sub` of tokens a subject identifier names: a person of this issuer, or an opaque id (a client's own tokens). */
function subjectOf(issuer: string, id: unknown): string | undefined {
  if (typeof id !== 'object' || id === null) return undefined;
  const s = id as Record<string, unknown>;
  if (s.format === 'iss_sub' && s.iss === issuer && typeof s.sub === 'string') return s.sub;
  if (s.format === 'opaque' && typeof s.id === 'string') return s.id;
  return undefined;
}

function header(headers: Record<string, string | readonly string[] | undefined>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? (value as string[])[0] : (value as string | undefined);
  }
  return undefined;
}

/**
 * Tokens the security events revoked, as the guard checks them (createGuard's `revocations`). A
 * revocation is remembered as long as a token issued before it could still be valid
 * (`maxTokenLifetimeSeconds`, default an hour: at least the longest access token lifetime of the
 * resource server), then forgotten. Memory only, per process: a cluster gives each process its
 * own receiver route or shares an implementation of this interface.
 */
export interface SecurityEventRevocations {
  /** Every token of `sub` issued at or before `at` (epoch s) is refused. */
  revokeSubject(sub: string, at: number): void;
  /**
   * Every token with this grant (`grant_id`), this refresh family (`refresh_family`) or this `jti`,
   * issued at or before `at`, is refused.
   */
  revokeSession(id: string, at: number): void;
  /** Why the token is refused, or undefined. */
  check(claims: Pick<AccessTokenClaims, 'sub' | 'iat' | 'jti'> & { grant_id?: unknown; refresh_family?: unknown }): string | undefined;
}

/** What of a token the revocations read: whose, when issued, and the sessions it belongs to. */
type SessionClaims = Parameters<SecurityEventRevocations['check']>[0];

/**
 * The session ids a token answers to: its `jti`, its grant, and the refresh family it was issued
 * with — a session-revoked SET names the family when one refresh token was revoked (only that
 * family's tokens end, not the grant's other devices), the grant when the grant was.
 */
function sessionIdsOf(claims: SessionClaims): string[] {
  return [claims.jti, claims.grant_id, claims.refresh_family].filter((id): id is string => typeof id === 'string' && id.length > 0);
}

export class MemorySecurityEventRevocations implements SecurityEventRevocations {
  readonly #subjects: RevocationTimes;
  readonly #sessions: RevocationTimes;
  readonly #now: () => number;

  /**
   * `maxEntries` (default 100,000) bounds each of the two maps (subjects, sessions). Past it, the
   * revocations whose tokens have all expired are forgotten first, then the least recently revoked.
   */
  constructor(options: { maxTokenLifetimeSeconds?: number; now?: () => number; maxEntries?: number } = {}) {
    const lifetime = options.maxTokenLifetimeSeconds ?? 3600;
    const max = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
    this.#subjects = new RevocationTimes(max, lifetime);
    this.#sessions = new RevocationTimes(max, lifetime);
  }

  revokeSubject(sub: string, at: number): void {
    this.#subjects.remember(sub, at, Math.floor(this.#now() / 1000));
  }

  revokeSession(id: string, at: number): void {
    this.#sessions.remember(id, at, Math.floor(this.#now() / 1000));
  }

  check(claims: SessionClaims): string | undefined {
    const subject = this.#subjects.get(claims.sub);
    if (subject !== undefined && claims.iat <= subject) return 'the subject\'s tokens were revoked by a security event';
    for (const id of sessionIdsOf(claims)) {
      const session = this.#sessions.get(id);
      if (session !== undefined && claims.iat <= session) return 'the token\'s session was revoked by a security event';
    }
    return undefined;
  }
}

/**
 * Revocation times by key, at most `max` of them, the most recently revoked last. Past the bound,
 * a sweep forgets the revocations no live token can predate (older than `lifetime`), at most once
 * a second: a sweep reads every entry, and a flood of events into a map full of live revocations
 * would otherwise pay one per event. Between sweeps, and when the sweep freed nothing, the least
 * recently revoked is forgotten (its tokens expire soonest).
 */
class RevocationTimes {
  readonly #times = new Map<string, number>();
  readonly #oldest = new OldestFirst(this.#times);
  readonly #max: number;
  readonly #lifetime: number;
  #sweptAt = -Infinity;

  constructor(max: number, lifetime: number) {
    this.#max = max;
    this.#lifetime = lifetime;
  }

  get(key: string): number | undefined {
    return this.#times.get(key);
  }

  remember(key: string, at: number, nowSeconds: number): void {
    const time = Math.max(at, this.#times.get(key) ?? 0);
    this.#times.delete(key);
    this.#times.set(key, time);
    if (this.#times.size <= this.#max) return;
    if (nowSeconds > this.#sweptAt) {
      this.#sweptAt = nowSeconds;
      for (const [k, t] of this.#times) if (t + this.#lifetime < nowSeconds) this.#times.delete(k);
    }
    this.#oldest.trim(this.#max);
  }
}
