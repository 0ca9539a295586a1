import type { X509Certificate } from 'node:crypto';
import type { AgentRegistry } from '../../agents/registry.ts';
import type { TrustedCertificate, TrustOutcome } from '../../pki/status.ts';
import type { Clock } from '../../clock.ts';
import { OAuthError } from '../../oauth-error.ts';
import { hasControlCharacter } from '../../parameters.ts';
import type { ReplayCache } from '../../tokens/replay-cache.ts';
import type { AuthMethod } from '../metadata.ts';
import type { Client, ClientStore } from '../store.ts';
import { maxClientIdLength, parseBasicAuthorization, verifyClientSecret } from './client-secret.ts';
import { invalidClient, quote } from './errors.ts';
import {
  assertionClientId,
  parseClientAssertion,
  requireJwtBearerType,
  verifyClientAssertion,
  type ParsedAssertion,
} from './private-key-jwt.ts';
import { throttledError, type AuthAttempt, type AuthFailureThrottle } from './throttle.ts';
import { certificateThumbprint, verifySelfSignedTlsClientAuth, verifyTlsClientAuth } from './tls-client-auth.ts';
import type { AuthenticatedClient, ClientAuthInput } from './types.ts';
import type { ClientKeySets } from './remote-keys.ts';
import type { AnchoredCertificate, ClientTrustAnchors } from '../trust-anchors/check.ts';

export type { AuthenticatedClient, ClientAuthInput } from './types.ts';
export { MemoryAuthFailureThrottle, type AuthFailureThrottle, type ThrottleOptions } from './throttle.ts';

/** What client authentication needs from the rest of the server. */
export interface AuthDeps {
  clients: Pick<ClientStore, 'get'>;
  /** Single use of assertion `jti`s, shared by every node (the database). */
  replay: ReplayCache;
  /** The issuer identifier: the only `aud` a client assertion may carry. */
  issuer: string;
  clock: Clock;
  /** Failure throttling (RFC 6819 §4.3.5); without it nothing is throttled. */
  throttle?: AuthFailureThrottle;
  /** Largest client_assertion in bytes (default 8 KiB). */
  maxAssertionBytes?: number;
  /**
   * Whether a presented certificate is one of Clearance's own CA (src/pki/status.ts): its chain,
   * dates and status checked here, so a revoked one is refused at once whoever validated the TLS
   * handshake. Without it, the TLS layer's word is all there is.
   */
  certificateTrust?: (certificate: X509Certificate) => Promise<TrustOutcome>;
  /** Keys of clients registered with `jwks_uri` (./remote-keys.ts); without it such clients cannot authenticate by key. */
  clientKeys?: ClientKeySets;
  /**
   * Per-client trust anchors (src/clients/trust-anchors): a tls_client_auth client registered with
   * `tls_client_auth_trust_anchor` is refused without them (fail closed).
   */
  trustAnchors?: ClientTrustAnchors;
  /**
   * The agents registry (src/agents/registry.ts): which agent a client of kind `agent` is, so that
   * a certificate of Clearance's CA naming an agent authenticates that agent's client only. Without
   * it, a client of kind `agent` is held to a certificate issued to its own id, like any client.
   */
  agents?: Pick<AgentRegistry, 'snapshot'>;
}

/** RFC 6749 §5.2: the challenge sent with a 401 when the client tried the Authorization header. */
export const basicChallenge = 'Basic realm="clearance"';

/**
 * Authenticates the client of a token-endpoint-style request (RFC 6749 §2.3, §3.2.1; RFC 7523 §3;
 * RFC 8705 §2). The rules, in order:
 * 1. the credentials present are read: an Authorization header, client_secret, or
 *    client_assertion(_type); at most one of these (RFC 6749 §2.3), none of them sent twice;
 * 2. a client_id in the body names the client the credential names;
 * 3. the attempt is not already throttled (its source address; the client from that address; for
 *    a secret, the client while its secret is being guessed) — checked before any lookup or
 *    signature, so a throttled caller costs nothing;
 * 4. the client exists;
 * 5. the method used is the client's registered token_endpoint_auth_method; with no credential,
 *    the client's method must be mTLS (a certificate is checked) or, where the caller allows it,
 *    `none`;
 * 6. the credential verifies (a client assertion's jti is consumed last);
 * 7. the throttle settles the outcome in one step on its counters as they are now: a failure is
 *    counted (a wrong secret of a client that has one also against the client) unless the
 *    counters already refuse it, and a refused attempt — a failure, or a secret's success — is a
 *    429 (throttle.ts has the model and why). A key's success (an assertion, a certificate) is not
 *    settled: nothing was guessed, and step 3 already refused a throttled source.
 * A presented certificate's thumbprint is returned whatever the method (RFC 8705 §3). Every
 * failure is an OAuthError — `invalid_client` (401; 400 for an oversized assertion; 429 when
 * throttled), or `invalid_request` for a repeated parameter — with a non-secret `detail` for the
 * log and audit, plus a Basic challenge on a 401 when the Authorization header was used
 * (RFC 6749 §5.2). Other errors (the database) pass through untouched and count as nothing.
 */
export async function authenticateClient(input: ClientAuthInput, deps: AuthDeps): Promise<AuthenticatedClient> {
  const { throttle } = deps;
  let attempt: AuthAttempt = { address: input.sourceAddress, secret: false };
  // True once a secret is about to be checked against the one the client has: a failure from then on is a guess.
  let guessing = false;
  try {
    const credentials = readCredentials(input, deps);
    const clientId = credentials.clientId;
    attempt = { address: input.sourceAddress, clientId, secret: credentials.kind === 'client_secret_basic' || credentials.kind === 'client_secret_post' };
    requireSameClientId(input, credentials);
    const early = await throttle?.check(attempt);
    if (early) throw throttledError(early);
    const client = await findClient(deps, clientId);
    const method = requireRegisteredMethod(client, credentials, input);
    guessing = attempt.secret && client.secretHash !== null;
    const { assertionJti, caCertificate, previousSecret, anchoredCertificate } = await verifyCredential(method, credentials, client, input, deps);
    // A success is settled only where it could be a right guess (a secret). A signed assertion or a
    // certificate proves possession of a private key, which no one guesses, so its success reveals
    // nothing; and with the counters in Redis, its settle would be one more round trip on every
    // token request (issue 16 item 7). The check before verification still refused it if throttled.
    if (attempt.secret) {
      const refused = await throttle?.settle(attempt, 'success');
      if (refused) throw throttledError(refused);
    }
    return {
      client,
      method,
      ...(input.certificate ? { certificateThumbprint: certificateThumbprint(input.certificate) } : {}),
      ...(assertionJti ? { assertionJti } : {}),
      ...(caCertificate ? { caCertificate } : {}),
      ...(previousSecret ? { previousSecret } : {}),
      ...(anchoredCertificate ? { anchoredCertificate } : {}),
    };
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    if (error.status === 429) throw error;
    const refused = await throttle?.settle(attempt, guessing ? 'secret_guess' : 'failure');
    if (refused) throw throttledError(refused);
    throw input.authorization !== undefined ? withBasicChallenge(error) : error;
  }
}

/**
 * The client_id a request claims, from whichever credential it carries (Basic header, assertion
 * `sub`, or body), verifying nothing: for the audit event of a failed authentication. Undefined
 * when no plausible client_id can be read.
 */
export function claimedClientId(input: ClientAuthInput, maxAssertionBytes?: number): string | undefined {
  let id: string | undefined;
  try {
    id = readCredentials(input, { maxAssertionBytes }).clientId;
  } catch {
    id = input.form.all('client_id')[0];
  }
  return id && id.length <= maxClientIdLength && !hasControlCharacter(id) ? id : undefined;
}

/** What the request carried, before anything is verified. */
type Credentials =
  | { kind: 'client_secret_basic'; clientId: string; secret: string }
  | { kind: 'client_secret_post'; clientId: string; secret: string }
  | { kind: 'private_key_jwt'; clientId: string; assertion: ParsedAssertion }
  /** Only a client_id: mTLS (with the certificate) or a public client. */
  | { kind: 'client_id'; clientId: string };

const authParameters = ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type'];

/** Step 1: finds the one authentication method used, and the client_id it claims. */
function readCredentials(input: ClientAuthInput, deps: Pick<AuthDeps, 'maxAssertionBytes'>): Credentials {
  const { form } = input;
  // RFC 6749 §3.2: request parameters MUST NOT be included more than once.
  const repeated = form.repeated().filter((name) => authParameters.includes(name));
  if (repeated.length > 0) {
    throw new OAuthError('invalid_request', `parameter sent more than once: ${repeated.join(', ')}`, {
      detail: `repeated client authentication parameters: ${repeated.join(', ')}`,
    });
  }
  const secret = form.get('client_secret');
  const assertion = form.get('client_assertion');
  const assertionType = form.get('client_assertion_type');
  const used = [
    input.authorization !== undefined && 'client_secret_basic',
    secret !== undefined && 'client_secret_post',
    (assertion !== undefined || assertionType !== undefined) && 'private_key_jwt',
  ].filter((m) => m !== false);
  // RFC 6749 §2.3: the client MUST NOT use more than one authentication method in each request.
  if (used.length > 1) {
    throw invalidClient(`more than one client authentication method: ${used.join(', ')}`, 'use exactly one client authentication method');
  }
  switch (used[0]) {
    case 'client_secret_basic': {
      const basic = parseBasicAuthorization(input.authorization!);
      return { kind: 'client_secret_basic', ...basic };
    }
    case 'client_secret_post': {
      const clientId = form.get('client_id');
      if (clientId === undefined) throw invalidClient('client_secret without client_id', 'client_id is required with client_secret');
      return { kind: 'client_secret_post', clientId, secret: secret! };
    }
    case 'private_key_jwt': {
      const jwt = requireJwtBearerType(assertionType, assertion);
      const parsed = parseClientAssertion(jwt, deps.maxAssertionBytes);
      return { kind: 'private_key_jwt', clientId: assertionClientId(parsed), assertion: parsed };
    }
    default: {
      const clientId = form.get('client_id');
      if (clientId === undefined) throw invalidClient('no client authentication and no client_id', 'client authentication is required');
      return { kind: 'client_id', clientId };
    }
  }
}

/**
 * Step 2: a client_id in the body names the client the credential names (client B's id with
 * A's credentials is refused, not silently resolved either way).
 */
function requireSameClientId(input: ClientAuthInput, credentials: Credentials): void {
  const bodyId = input.form.get('client_id');
  if (bodyId !== undefined && bodyId !== credentials.clientId) {
    throw invalidClient(
      `client_id ${quote(bodyId)} in the body differs from ${quote(credentials.clientId)} authenticated by ${credentials.kind}`,
      'client_id does not match the client credentials',
    );
  }
}

/** Step 4: the client exists and is in service. */
async function findClient(deps: AuthDeps, clientId: string): Promise<Client> {
  // A client_id no client can have (too long, or with a control character: issue 20 item 4) is
  // unknown without a lookup; PostgreSQL could not even compare a NUL.
  const client = clientId.length <= maxClientIdLength && !hasControlCharacter(clientId) ? await deps.clients.get(clientId) : undefined;
  if (!client) throw invalidClient(`unknown client ${quote(clientId)}`);
  // A client that apply's prune disabled (src/lifecycle/prune.ts) cannot authenticate: RFC 6749 §5.2
  // invalid_client, the same answer as an unknown one, so a caller learns nothing more.
  if (client.disabledAt !== null) throw invalidClient(`client ${quote(clientId)} is disabled`);
  return client;
}

/**
 * Step 5: the method used is the one the client registered (RFC 7591 §2
 * token_endpoint_auth_method); a client cannot pick a weaker one per request.
 */
function requireRegisteredMethod(client: Client, credentials: Credentials, input: ClientAuthInput): AuthMethod {
  const registered = client.metadata.token_endpoint_auth_method;
  const id = client.metadata.client_id;
  if (credentials.kind !== 'client_id') {
    if (credentials.kind !== registered) throw invalidClient(`client ${id} used ${credentials.kind} but is registered for ${registered}`);
    return registered;
  }
  switch (registered) {
    case 'tls_client_auth':
    case 'self_signed_tls_client_auth':
      return registered;
    case 'none':
      if (!input.allowPublic) {
        throw invalidClient(`public client ${id} cannot authenticate here`, 'this request requires a confidential client');
      }
      return registered;
    default:
      throw invalidClient(`client ${id} sent only client_id but is registered for ${registered}`, 'client authentication is required');
  }
}

/**
 * Step 6: the credential verifies. Resolves the assertion's jti for private_key_jwt, and for mTLS
 * the certificate of Clearance's own CA it was made with, if it was.
 */
async function verifyCredential(
  method: AuthMethod,
  credentials: Credentials,
  client: Client,
  input: ClientAuthInput,
  deps: AuthDeps,
): Promise<{ assertionJti?: string; caCertificate?: TrustedCertificate; previousSecret?: true; anchoredCertificate?: AnchoredCertificate }> {
  switch (method) {
    case 'client_secret_basic':
    case 'client_secret_post': {
      const { previous } = verifyClientSecret(client, (credentials as { secret: string }).secret, deps.clock.now());
      return previous ? { previousSecret: true } : {};
    }
    case 'private_key_jwt': {
      const { assertion } = credentials as { assertion: ParsedAssertion };
      return { assertionJti: (await verifyClientAssertion(assertion, client, deps)).jti };
    }
    case 'tls_client_auth': {
      const chain = await chainOf(client, input, deps);
      verifyTlsClientAuth(client, input.certificate, chain.verified, deps.clock);
      if (chain.own) await requireIssuedToClient(client, chain.own, deps);
      // Under the institutional profile a client without an anchor is checked too: and refused.
      const anchored = client.metadata.tls_client_auth_trust_anchor === undefined && !deps.trustAnchors?.institutional ? undefined : await anchoredBy(client, input, chain.own, deps);
      return { ...(chain.own ? { caCertificate: chain.own } : {}), ...(anchored ? { anchoredCertificate: anchored } : {}) };
    }
    case 'self_signed_tls_client_auth': {
      const chain = await chainOf(client, input, deps);
      await verifySelfSignedTlsClientAuth(client, input.certificate, deps.clientKeys);
      return chain.own ? { caCertificate: chain.own } : {};
    }
    case 'none':
      return {};
  }
}

/**
 * Whether the presented certificate's chain is validated: by Clearance itself when its own CA
 * issued it — and then only while it is unexpired, unrevoked and of a profile that authenticates
 * clients (`client_auth`) — else by the TLS layer or proxy (`certificateChainVerified`).
 */
async function chainOf(client: Client, input: ClientAuthInput, deps: AuthDeps): Promise<{ verified: boolean; own?: TrustedCertificate }> {
  if (!input.certificate || !deps.certificateTrust) return { verified: input.certificateChainVerified };
  const trust = await deps.certificateTrust(input.certificate);
  if (!trust.ours) return { verified: input.certificateChainVerified };
  const id = client.metadata.client_id;
  if (!trust.ok) throw invalidClient(`client ${id} presented a certificate of Clearance's CA that is not usable: ${trust.reason}`);
  if (!trust.certificate.profile.client_auth) {
    throw invalidClient(`client ${id} presented a certificate of profile ${trust.certificate.profile.name}, which does not authenticate clients`);
  }
  return { verified: true, own: trust.certificate };
}

/**
 * RFC 8705 §2.1: the certificate must name the client. A certificate of Clearance's own CA names
 * whom the CA issued it to, its holder (docs/pki.md): it authenticates that client only, whatever
 * subject or SAN another client registered — else a workload's certificate would authenticate a
 * client that registered the workload's name. A device certificate names a device an enrolling
 * service chose, never a client. An agent's certificate names the agent, whose client may have
 * another id: it authenticates the client of that agent only — at every endpoint, not only where
 * tokens are issued (src/agents/authority.ts asks more there: a certificate attested for the agent).
 */
async function requireIssuedToClient(client: Client, certificate: TrustedCertificate, deps: Pick<AuthDeps, 'agents'>): Promise<void> {
  const id = client.metadata.client_id;
  if (certificate.profile.kind === 'device') {
    throw invalidClient(`client ${id} presented certificate ${certificate.serial} of device profile ${certificate.profile.name}: a device certificate authenticates no client`);
  }
  const agent = client.metadata.kind === 'agent' ? await agentOf(id, deps) : undefined;
  if (certificate.holder === (agent ?? id)) return;
  const whose = agent === undefined ? '' : `, not to its agent ${quote(agent)}`;
  throw invalidClient(`client ${id} presented certificate ${certificate.serial} of Clearance's CA, which was issued to ${quote(certificate.holder)}${whose}`);
}

/** The id of the agent whose client `clientId` is (docs/agents.md), or undefined when no agent uses it. */
async function agentOf(clientId: string, deps: Pick<AuthDeps, 'agents'>): Promise<string | undefined> {
  return (await deps.agents?.snapshot())?.byClient.get(clientId)?.id;
}

/**
 * A client bound to a trust anchor: its certificate's chain must end at that anchor, and a partner
 * CA's certificate must not be revoked (src/clients/trust-anchors/check.ts); under the institutional
 * profile, a client bound to none is refused there. After the subject match, so a refusal here is
 * about a certificate that names the client.
 */
async function anchoredBy(client: Client, input: ClientAuthInput, own: TrustedCertificate | undefined, deps: AuthDeps): Promise<AnchoredCertificate> {
  if (!deps.trustAnchors) throw invalidClient(`client ${client.metadata.client_id} is bound to a trust anchor, and this server checks none`);
  return deps.trustAnchors.check(client.metadata, {
    certificate: input.certificate!,
    ...(input.certificateChain ? { chain: input.certificateChain } : {}),
    ...(own ? { own } : {}),
  });
}

function withBasicChallenge(error: OAuthError): OAuthError {
  if (error.error !== 'invalid_client' || error.status !== 401) return error;
  return new OAuthError(error.error, error.description, {
    status: error.status,
    ...(error.detail !== undefined ? { detail: error.detail } : {}),
    headers: { ...error.headers, 'www-authenticate': basicChallenge },
  });
}
