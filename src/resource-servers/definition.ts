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
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) return v.fail(path, 'must be https (http only for loopback hosts)');
  return text;
}

