import { requestedTarget } from '../authorization/target.ts';
import { AuthorizationParameters } from '../authorization/parameters.ts';
import { isOidcScope, type OidcScope } from '../authorization/scopes.ts';
import { isFapi2 } from '../clients/profile.ts';
import type { Client } from '../clients/store.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { FormParameters } from '../parameters.ts';
import { isBuiltinResourceServer } from '../resource-servers/builtins.ts';
import { resolveHint, type ResolvedHint } from './hints.ts';
import { mustSign, verifySignedAuthenticationRequest } from './signed-request.ts';
import type { CibaMode, CibaPayload } from './store.ts';
import { newTxn } from '../transactions/txn.ts';

/**
 * A backchannel authentication request's parameters (CIBA Core §7.1), read and checked without
 * HTTP, for a client already authenticated and registered for the CIBA grant. The rules, in order:
 * 1. signed (§7.1.1): with `request`, only its verified claims count and no request parameter may
 *    travel beside it; a FAPI 2.0 client, or one registered with a signing alg, must sign;
 * 2. `binding_message` (§7.1): at most 100 characters of printable text — letters, marks, digits,
 *    punctuation, symbols and spaces; no control, format (bidi overrides, zero-width) or line
 *    separator characters — else `invalid_binding_message` (§13); REQUIRED of a FAPI 2.0 client
 *    (FAPI-CIBA §5.2.2), else `invalid_request`;
 * 3. `scope` is REQUIRED and includes `openid` (§7.1); OpenID scopes must be allowed to the client;
 *    business scopes, `resource` (RFC 8707, one audience) and `authorization_details` (RFC 9396,
 *    validated as at /authorize) choose and describe the access token; never for one of
 *    Clearance's own resource servers (the admin API, the access API): invalid_target;
 * 4. `requested_expiry` (§7.1): a positive integer of seconds, at most an hour;
 * 5. `client_notification_token` (§7.1): REQUIRED in ping mode, at most 1024 characters of the
 *    RFC 6750 §2.1 bearer syntax;
 * 6. `acr_values`: up to ten values, kept for the approvers and checked against the subject's proof;
 * 7. `user_code` is not supported (discovery says so: backchannel_user_code_parameter_supported
 *    false); like any parameter the server does not use, it is ignored (RFC 6749 §3.1) — never
 *    read, stored or logged;
 * 8. the hint (src/ciba/hints.ts): exactly one, naming an active person;
 * 9. `txn`: absent or `new` — the request's id is its trade's txn (src/ciba/open.ts starts it).
 */
export interface CibaAuthenticationRequest {
  hint: ResolvedHint;
  payload: CibaPayload;
  bindingMessage?: string;
  clientNotificationToken?: string;
  /** Seconds: the requested expiry, or the default. */
  expiresIn: number;
  signed: boolean;
}

/** The parameters of §7.1 (those that may not travel beside a signed request). */
export const cibaParameters = [
  'scope',
  'client_notification_token',
  'acr_values',
  'login_hint_token',
  'id_token_hint',
  'login_hint',
  'binding_message',
  'user_code',
  'requested_expiry',
  'authorization_details',
  'resource',
  // Clearance's extension (src/transactions/txn.ts): here the txn is always minted — the request's id.
  'txn',
] as const;

export const maxBindingMessageLength = 100;
export const defaultExpirySeconds = 600;
export const maxExpirySeconds = 3600;
export const maxNotificationTokenLength = 1024;

/** Printable text: letters, marks, numbers, punctuation, symbols, spaces (Unicode general categories). */
const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]+$/u;
/** RFC 6750 §2.1 b64token. */
const b64token = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Rule 2, on its own: asked of the value as sent, before the parameters' control-character rule
 * (which would call a control character in it invalid_request), once the client has authenticated
 * (src/endpoints/backchannel/index.ts lets the form's rule pass binding_message for this).
 */
export function bindingMessageProblem(message: string | undefined): string | undefined {
  if (message === undefined) return undefined;
  if ([...message].length > maxBindingMessageLength) return `binding_message is longer than ${maxBindingMessageLength} characters`;
  if (!printable.test(message) || message.trim() !== message) return 'binding_message must be printable text without control or formatting characters, or leading or trailing spaces';
  return undefined;
}

export async function readAuthenticationRequest(ctx: Context, client: Client, form: FormParameters, mode: CibaMode): Promise<CibaAuthenticationRequest> {
  const { params, signed, rawBindingMessage } = await parametersOf(ctx, client, form);
  // Rule 2 on the value as sent, before any parameter is read: the parameters' control-character
  // rule (src/parameters.ts) would refuse one with a control character as invalid_request.
  const rawProblem = bindingMessageProblem(rawBindingMessage);
  if (rawProblem) throw new OAuthError('invalid_binding_message', rawProblem);
  return asInvalidRequest(async () => {
    const bindingMessage = params.string('binding_message');
    // Again on the value read: a signed request's claim may be a number, read as its text.
    const bindingProblem = bindingMessageProblem(bindingMessage);
    if (bindingProblem) throw new OAuthError('invalid_binding_message', bindingProblem);
    // FAPI-CIBA §5.2.2 (2): the server "shall ensure unique authorization context exists in the
    // authorization request or require a binding_message". Nothing else shown to the person tells
    // two requests for them apart (two identical orders look the same), so a FAPI client sends one.
    if (bindingMessage === undefined && isFapi2(ctx.config, client)) {
      throw new OAuthError('invalid_request', 'binding_message is required for a client under the FAPI 2.0 profile (FAPI-CIBA)');
    }

    const { oidcScopes, business } = readScope(client, params.string('scope'));
    // RFC 9396 §5, RFC 8707 §2: the entries, and the one resource server with its scopes (as at /authorize).
    const { authorizationDetails, resource, scopes } = await requestedTarget(ctx, params, client, business);
    // RFC 8707 §2 invalid_target: a CIBA token is a client's, approved once by a person on their
    // device; for Clearance's own APIs (administration, approvals, policy decisions) it would let
    // the client act as the person there — e.g. answer its own later requests.
    if (resource !== undefined && isBuiltinResourceServer(ctx.config.issuer, resource)) {
      throw new OAuthError('invalid_target', "a backchannel authentication request cannot ask for Clearance's own APIs");
    }

    // The trade's txn (docs/audit.md "One txn from the first action"): a CIBA request starts its
    // trade, and its txn is the request's own id, under which every approval is filed. A client
    // may say `txn=new`; a txn of its choosing would split the trade's evidence in two.
    const txn = params.string('txn');
    if (txn !== undefined && txn !== newTxn) {
      throw new OAuthError('invalid_request', "a backchannel authentication request's txn is minted by Clearance (the request's id, in the token's txn): send txn=new or none", { detail: 'txn_chosen_at_ciba' });
    }

    const expiresIn = readExpiry(params.string('requested_expiry'));
    const clientNotificationToken = mode === 'ping' ? readNotificationToken(params.string('client_notification_token')) : undefined;
    const acrText = params.string('acr_values');
    const acrValues = acrText === undefined ? [] : [...new Set(acrText.split(' ').filter(Boolean))];
    if (acrValues.length > 10 || acrValues.some((a) => a.length > 200)) throw new OAuthError('invalid_request', 'acr_values is too long');

    const hint = await resolveHint(ctx, client, {
      ...optional('login_hint', params.string('login_hint')),
      ...optional('id_token_hint', params.string('id_token_hint')),
      ...optional('login_hint_token', params.string('login_hint_token')),
    });
    const payload: CibaPayload = {
      ...(resource !== undefined ? { resource } : {}),
      scopes,
      oidcScopes,
      authorizationDetails,
      ...(hint.act ? { act: hint.act } : {}),
      acrValues,
    };
    return {
      hint,
      payload,
      ...(bindingMessage !== undefined ? { bindingMessage } : {}),
      ...(clientNotificationToken !== undefined ? { clientNotificationToken } : {}),
      expiresIn,
      signed,
    };
  });
}

/**
 * Rule 1: the parameters that count, from the form or from the verified signed request, and the
 * binding_message among them as sent (a string), for rule 2.
 */
async function parametersOf(ctx: Context, client: Client, form: FormParameters): Promise<{ params: AuthorizationParameters; signed: boolean; rawBindingMessage?: string }> {
  const jwt = form.get('request');
  if (jwt === undefined) {
    // FAPI-CIBA §5.2.2: a FAPI client's authentication requests are signed; §4: so are those of a client that registered an alg.
    if (mustSign(ctx, client)) throw new OAuthError('invalid_request', 'this client must send a signed authentication request (request)');
    const raw = form.get('binding_message');
    return { params: AuthorizationParameters.fromForm(form, 'form'), signed: false, ...(raw !== undefined ? { rawBindingMessage: raw } : {}) };
  }
  // §7.1.1: the parameters are the JWT's claims; a parameter beside it would be unsigned.
  const beside = cibaParameters.filter((name) => form.get(name) !== undefined);
  if (beside.length > 0) throw new OAuthError('invalid_request', `with a signed request, ${beside.join(', ')} must be inside it`);
  const claims = await verifySignedAuthenticationRequest(ctx, client, jwt);
  const raw = claims.binding_message;
  return { params: AuthorizationParameters.fromClaims(claims), signed: true, ...(typeof raw === 'string' && raw !== '' ? { rawBindingMessage: raw } : {}) };
}

/** Rule 3's scope: openid required; the OpenID scopes allowed to the client; the rest are business scopes. */
function readScope(client: Client, scopeText: string | undefined): { oidcScopes: OidcScope[]; business: string[] } {
  // §7.1: scope is REQUIRED and, this being OpenID, includes openid.
  if (scopeText === undefined) throw new OAuthError('invalid_request', 'scope is required');
  const words = scopeText.split(' ');
  // RFC 6749 §3.3: scope-token = 1*NQCHAR, separated by single spaces.
  if (words.some((w) => w === '' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(w))) throw new OAuthError('invalid_scope', 'scope is malformed');
  if (!words.includes('openid')) throw new OAuthError('invalid_scope', 'scope must include openid');
  const allowed = new Set(client.metadata.scope?.split(' ') ?? []);
  const oidcScopes = [...new Set(words.filter(isOidcScope))];
  for (const scope of oidcScopes) {
    if (!allowed.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not allowed for this client`);
  }
  return { oidcScopes, business: [...new Set(words.filter((w) => !isOidcScope(w)))] };
}

function readExpiry(text: string | undefined): number {
  if (text === undefined) return defaultExpirySeconds;
  // §7.1: "A positive integer allowing the client to request the expires_in value".
  if (!/^[0-9]{1,7}$/.test(text) || Number(text) < 1 || Number(text) > maxExpirySeconds) {
    throw new OAuthError('invalid_request', `requested_expiry must be an integer from 1 to ${maxExpirySeconds} (seconds)`);
  }
  return Number(text);
}

function readNotificationToken(token: string | undefined): string {
  // §7.1: REQUIRED if the Client is registered to use Ping or Push modes.
  if (token === undefined) throw new OAuthError('invalid_request', 'client_notification_token is required in ping mode');
  // §7.1: at most 1024 characters, the syntax of RFC 6750 §2.1 bearer credentials.
  if (token.length > maxNotificationTokenLength || !b64token.test(token)) {
    throw new OAuthError('invalid_request', `client_notification_token must be at most ${maxNotificationTokenLength} characters of the RFC 6750 bearer token syntax`);
  }
  return token;
}

function optional<K extends string>(name: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [name]: value } as Record<K, string>);
}

/** The shared parameter reader answers invalid_request_object for a claim's problem; CIBA §13 calls that invalid_request. */
async function asInvalidRequest<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof OAuthError && error.error === 'invalid_request_object') throw new OAuthError('invalid_request', error.description, { ...(error.detail ? { detail: error.detail } : {}) });
    throw error;
  }
}
