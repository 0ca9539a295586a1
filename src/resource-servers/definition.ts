import { regionPattern } from '../entities/definition.ts';
import { isValidLei } from '../entities/lei.ts';
import { isLoopbackHost } from '../jose/loopback.ts';
import { Validator, join } from '../validation.ts';

/** An audience per business function (DESIGN §3): what it accepts and how its tokens are made. */
export interface ResourceServer {
  /** The audience URI; RFC 8707 `resource` values select it. */
  identifier: string;
  name?: string;
  /** Business-verb scopes it accepts, e.g. `order:create`. */
  scopes: string[];
  /** Access token lifetime in seconds. */
  access_token_ttl: number;
  /** When true, only DPoP- or certificate-bound tokens are issued for it. */
  require_sender_constraint: boolean;
  /** Clients (usually the resource server's own) allowed to introspect tokens for this audience. */
  introspection_clients?: string[];
  /**
   * Clients (the resource server's own backend) allowed to exchange tokens issued for this audience
   * for tokens to the next hop (RFC 8693, src/grants/token-exchange.ts).
   */
  exchange_clients?: string[];
  /**
   * Where the resource server processes the data it receives (a declared region): tokens about a
   * subject are issued for it only when the subject's legal entities permit that region (data
   * residency, src/policy/residency.ts).
   */
  region?: string;
  /**
   * What its access tokens look like (RFC 7662 §1): `jwt` (the default when absent; RFC 9068, the
   * resource server verifies them itself) or `reference` — an opaque handle it can resolve only by
   * introspection, for a resource server that must not see token contents in transit
   * (src/tokens/reference-tokens.ts). Stored only when given, so definitions applied before it
   * existed stay unchanged.
   */
  access_token_format?: AccessTokenFormat;
  /**
   * The LEI of the firm that runs the API (a declared legal entity, checked in apply). A token under
   * a txn issued or exchanged for this audience makes that firm a party to the trade, so its evidence
   * producers may append under it (src/evidence/external.ts) — without holding introspection or
   * exchange rights they do not need. Stored only when given.
   */
  owner_lei?: string;
}

/** The formats of access tokens a resource server may take (`access_token_format`). */
export const accessTokenFormats = ['jwt', 'reference'] as const;
export type AccessTokenFormat = (typeof accessTokenFormats)[number];

/** The format of `server`'s access tokens: `jwt` unless it was registered `reference`. */
export function accessTokenFormatOf(server: Pick<ResourceServer, 'access_token_format'>): AccessTokenFormat {
  return server.access_token_format ?? 'jwt';
}

export const defaultAccessTokenTtl = 300;
export const maxAccessTokenTtl = 3600;

/** Scopes are business verbs on material objects (`order:create`), never roles. */
export const scopePattern = /^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$/;

const fields = ['identifier', 'name', 'scopes', 'access_token_ttl', 'require_sender_constraint', 'introspection_clients', 'exchange_clients', 'region', 'access_token_format', 'owner_lei'] as const;

/** Validates one resource server entry of an apply document or admin request; applies defaults. */
export function readResourceServer(v: Validator, path: string, input: unknown): ResourceServer | undefined {
  const object = v.object(path, input);
  if (!object) return undefined;
  v.knownKeys(path, object, fields);
  const before = v.problems.length;
  const identifier = readIdentifier(v, join(path, 'identifier'), object.identifier);
  const name = object.name === undefined ? undefined : v.string(join(path, 'name'), object.name, { maxLength: 200 });
  const scopes = v.array(
    join(path, 'scopes'),
    object.scopes,
    (p, s) => v.string(p, s, { pattern: scopePattern, patternMessage: 'must be a business verb scope such as order:create' }),
    { nonEmpty: true, unique: true },
  );
  const ttl =
    object.access_token_ttl === undefined
      ? defaultAccessTokenTtl
      : v.integer(join(path, 'access_token_ttl'), object.access_token_ttl, { min: 1, max: maxAccessTokenTtl });
  const bound =
    object.require_sender_constraint === undefined
      ? false
      : v.boolean(join(path, 'require_sender_constraint'), object.require_sender_constraint);
  const introspectors =
    object.introspection_clients === undefined
      ? undefined
      : v.array(join(path, 'introspection_clients'), object.introspection_clients, (p, c) => v.string(p, c, { maxLength: 128 }), {
          unique: true,
        });
  const exchangers =
    object.exchange_clients === undefined
      ? undefined
      : v.array(join(path, 'exchange_clients'), object.exchange_clients, (p, c) => v.string(p, c, { maxLength: 128 }), { unique: true });
  const region =
    object.region === undefined
      ? undefined
      : v.string(join(path, 'region'), object.region, { pattern: regionPattern, patternMessage: 'must be a region identifier (lowercase letters, digits and -)' });
  const format = object.access_token_format === undefined ? undefined : readFormat(v, join(path, 'access_token_format'), object.access_token_format);
  const owner = object.owner_lei === undefined ? undefined : readOwnerLei(v, join(path, 'owner_lei'), object.owner_lei);
  if (v.problems.length !== before || !identifier || !scopes || ttl === undefined || bound === undefined) return undefined;
  return {
    identifier,
    ...(name === undefined ? {} : { name }),
    scopes,
    access_token_ttl: ttl,
    require_sender_constraint: bound,
    ...(introspectors === undefined ? {} : { introspection_clients: introspectors }),
    ...(exchangers === undefined ? {} : { exchange_clients: exchangers }),
    ...(region === undefined ? {} : { region }),
    ...(format === undefined ? {} : { access_token_format: format }),
    ...(owner === undefined ? {} : { owner_lei: owner }),
  };
}

/** An LEI as clients' `owner_lei` is read (ISO 17442); apply checks that it is a declared legal entity. */
function readOwnerLei(v: Validator, path: string, value: unknown): string | undefined {
  const lei = v.string(path, value);
  if (lei === undefined) return undefined;
  return isValidLei(lei) ? lei : v.fail(path, 'must be a valid LEI (ISO 17442: 20 characters, check digits)');
}

function readFormat(v: Validator, path: string, value: unknown): AccessTokenFormat | undefined {
  const text = v.string(path, value, { maxLength: 20 });
  if (text === undefined) return undefined;
  if (!(accessTokenFormats as readonly string[]).includes(text)) return v.fail(path, `must be one of ${accessTokenFormats.join(', ')}`);
  return text as AccessTokenFormat;
}

/**
 * The one rule for what may be registered as an audience (apply, and the admin API through it; the
 * built-in audiences derive from the issuer). Elsewhere an identifier is only looked up: a request's
 * `resource` must equal a registered one (src/tokens/audience.ts), as must partners'
 * `allowed_audiences` and break-glass accounts' `audience`.
 *
 * RFC 8707 §2 allows any absolute URI without a fragment; Clearance takes three forms of it:
 * - `https:` URLs, any host;
 * - `http:` URLs to a loopback host only (src/jose/loopback.ts), the same latitude as every other
 *   "https, or plain http to this machine" rule;
 * - URNs (RFC 8141, `urn:<NID>:<NSS>`), a common audience form for an API that has no one URL.
 * An audience is never fetched, but it is shown to people (consent pages, the console) and written
 * to logs and audit events, so a scheme that means something else there — `javascript:`, `data:`,
 * `file:`, `ftp:`, `mailto:` — has no business naming an API and is refused.
 */
function readIdentifier(v: Validator, path: string, value: unknown): string | undefined {
  const text = v.string(path, value, { maxLength: 2000 });
  if (!text) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return v.fail(path, 'must be an absolute URI');
  }
  // RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
  if (text.includes('#')) return v.fail(path, 'must not contain a fragment');
  if (url.protocol === 'https:') return text;
  if (url.protocol === 'http:') return isLoopbackHost(url.hostname) ? text : v.fail(path, 'must be https (http only for loopback hosts)');
  if (url.protocol === 'urn:') return readUrn(v, path, text);
  return v.fail(path, `must be https (http only for loopback hosts) or a URN (urn:<NID>:<NSS>), not ${url.protocol}`);
}

/** RFC 8141 §2: NID = alphanum 0*30(alphanum / "-") alphanum. */
const urnNid = /^[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]$/;
/** RFC 8141 §2: NSS = pchar *(pchar / "/"), pchar as in RFC 3986 §3.3. */
const urnNss = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;

/**
 * A URN audience: `urn:` (any case), a NID and a non-empty NSS. No r- or q-component (`?+`, `?=`):
 * they are no part of a URN's identity (RFC 8141 §3), so two audiences differing only in them
 * would name the same thing, and a `resource` must equal an audience exactly.
 */
function readUrn(v: Validator, path: string, text: string): string | undefined {
  const rest = text.slice('urn:'.length);
  const colon = rest.indexOf(':');
  const nid = colon === -1 ? rest : rest.slice(0, colon);
  if (!urnNid.test(nid)) {
    return v.fail(path, 'must be a URN urn:<NID>:<NSS> (RFC 8141) whose NID is 2–32 letters, digits or -, starting and ending with a letter or digit');
  }
  const nss = colon === -1 ? '' : rest.slice(colon + 1);
  if (!urnNss.test(nss)) {
    return v.fail(path, 'must be a URN urn:<NID>:<NSS> (RFC 8141) whose NSS is non-empty and of URI path characters (no ?+ or ?= component)');
  }
  return text;
}
