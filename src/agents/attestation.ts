import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';
import { withinSpan } from '../clock.ts';
import type { Context } from '../context.ts';
import type { CheckedCsr } from '../pki/csr.ts';
import type { AgentDefinition, KeyStorage } from './definition.ts';
import type { ModelBinding } from './registry.ts';

/** An attestation lives minutes (AMENDMENTS "PKI, agents, signing"); a nonce as long. */
export const maxAttestationLifetimeSeconds = 600;
export const nonceLifetimeMs = 5 * 60_000;
/** Clock skew allowed between a pipeline and Clearance. */
const attestationSkewSeconds = 60;
/** The JWT type a pipeline's workload attestation carries. */
export const attestationType = 'attestation+jwt';
const algorithms = ['ES256', 'EdDSA', 'PS256'];
const maxJtiLength = 200;

export class AttestationRefusal extends Error {
  override name = 'AttestationRefusal';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** A single-use nonce for the agent's next attestation, kept as a SHA-256 digest. */
export async function issueAttestationNonce(ctx: Context, agentId: string): Promise<{ nonce: string; expiresAt: number }> {
  const agent = (await ctx.agents.snapshot()).agents.get(agentId);
  if (!agent || agent.status !== 'active') throw new AttestationRefusal('unknown_agent', `no active agent ${agentId}`);
  const nonce = randomBytes(32).toString('base64url');
  const now = ctx.clock.now();
  const expiresAt = now + nonceLifetimeMs;
  await ctx.storage.db.insertInto('agent_nonces').values({ nonce_hash: digest(nonce), agent_id: agentId, expires_at: expiresAt, used_at: null }).execute();
  await pruneExpiredNonces(ctx, now);
  return { nonce, expiresAt };
}

const pruneNoncesEveryMs = 10 * 60_000;
const lastNoncePrune = new WeakMap<object, number>();

/**
 * Anyone may ask for a nonce (the attestation is the credential, not the request for a nonce), so
 * the nonces nobody answered are deleted once expired — an expired or used one is refused whether
 * its row is there or not — at most once per 10 minutes per process: the store holds minutes of
 * nonces, not every nonce ever asked for.
 */
async function pruneExpiredNonces(ctx: Context, now: number): Promise<void> {
  const last = lastNoncePrune.get(ctx.storage) ?? -Infinity;
  if (withinSpan(now, last, pruneNoncesEveryMs)) return;
  lastNoncePrune.set(ctx.storage, now);
  await ctx.storage.db.deleteFrom('agent_nonces').where('expires_at', '<=', now).execute();
}

export interface VerifiedAttestation {
  pipeline: string;
  binding: ModelBinding;
  jti: string;
  keyStorage: KeyStorage;
  imageDigest: string;
}

/**
 * A workload attestation (docs/agents.md "Attestation"), each rule in order:
 * 1. a JWT of type `attestation+jwt` signed (ES256, EdDSA or PS256) by a key of a pipeline the agent
 *    names — keys embedded in the header are never used (RFC 8725 §3.10);
 * 2. `iss` is that pipeline, `sub` the agent, `aud` this issuer and no other, `jti` present;
 * 3. fresh: `iat` not in the future, `exp` in the future and after `iat`, at most 10 minutes after
 *    it (AMENDMENTS: minutes);
 * 4. it answers a nonce Clearance issued for this agent, unexpired, consumed here (single use), and
 *    its `jti` made no certificate before;
 * 5. it binds the certificate request's key: `cnf.jkt` is its RFC 7638 thumbprint;
 * 6. the key storage it names is one the agent allows (software only in development);
 * 7. its image digest, model digest and model version are exactly an approved binding of the agent.
 */
export async function verifyAttestation(ctx: Context, agent: AgentDefinition, attestation: unknown, csr: CheckedCsr): Promise<VerifiedAttestation> {
  if (typeof attestation !== 'string' || attestation.length === 0 || attestation.length > 16_384) throw new AttestationRefusal('malformed', 'attestation must be a compact JWT');
  let header;
  try {
    header = decodeProtectedHeader(attestation);
  } catch {
    throw new AttestationRefusal('malformed', 'attestation is not a JWT');
  }
  if (header.typ !== attestationType) throw new AttestationRefusal('malformed', `attestation typ must be ${attestationType}`);
  const snapshot = await ctx.agents.snapshot();
  let claims: JWTPayload | undefined;
  let pipeline: string | undefined;
  for (const id of agent.pipelines) {
    const keys = snapshot.pipelines.get(id)?.jwks;
    if (!keys) continue;
    try {
      ({ payload: claims } = await jwtVerify(attestation, createLocalJWKSet(keys as JSONWebKeySet), {
        algorithms,
        typ: attestationType,
        issuer: id,
        audience: ctx.config.issuer,
        subject: agent.id,
        currentDate: new Date(ctx.clock.now()),
        clockTolerance: attestationSkewSeconds,
        requiredClaims: ['exp', 'iat', 'jti', 'nonce'],
      }));
      pipeline = id;
      break;
    } catch (error) {
      if (error instanceof joseErrors.JWTClaimValidationFailed || error instanceof joseErrors.JWTExpired) {
        throw new AttestationRefusal('claims', `attestation claims refused: ${error.message}`);
      }
      // Not this pipeline's signature: try the agent's next pipeline.
    }
  }
  if (!claims || !pipeline) throw new AttestationRefusal('signature', `attestation is not signed by a pipeline of agent ${agent.id} (${agent.pipelines.join(', ')})`);
  // RFC 7519 §4.1.3 lets `aud` be an array, and jose accepts one that merely lists this issuer: an
  // attestation naming other relying parties too could be presented to them as well (and theirs
  // here). It is for this issuer only: one audience, a string or a one-member array.
  if (!isOnlyAudience(claims.aud, ctx.config.issuer)) throw new AttestationRefusal('claims', 'attestation must name this issuer as its only audience');
  // RFC 7519 §4.1.7: a string; bounded, as it is kept with the certificate.
  if (typeof claims.jti !== 'string' || claims.jti.length === 0 || claims.jti.length > maxJtiLength) throw new AttestationRefusal('claims', `attestation jti must be a string of 1 to ${maxJtiLength} characters`);
  // Fresh means issued now, for minutes: jose checks no `iat` in the future, and an `exp` before
  // `iat` would pass "at most 10 minutes from iat to exp" with an expiry of years.
  const now = Math.floor(ctx.clock.now() / 1000);
  if (Number(claims.iat) > now + attestationSkewSeconds) throw new AttestationRefusal('lifetime', 'attestation is issued in the future');
  if (Number(claims.exp) <= Number(claims.iat)) throw new AttestationRefusal('lifetime', 'attestation expires before it was issued');
  if (Number(claims.exp) - Number(claims.iat) > maxAttestationLifetimeSeconds) throw new AttestationRefusal('lifetime', `attestation lives longer than ${maxAttestationLifetimeSeconds} s`);
  const cnf = claims.cnf as { jkt?: unknown } | undefined;
  const jkt = await calculateJwkThumbprint(csr.publicKey.export({ format: 'jwk' }) as JWK, 'sha256');
  if (typeof cnf?.jkt !== 'string' || cnf.jkt !== jkt) throw new AttestationRefusal('key_binding', "attestation's cnf.jkt is not the certificate request's key");
  const keyStorage = claims.key_storage;
  if (typeof keyStorage !== 'string' || !(agent.key_storage as string[]).includes(keyStorage)) {
    throw new AttestationRefusal('key_storage', `key storage ${String(keyStorage)} is not allowed for agent ${agent.id} (${agent.key_storage.join(', ')})`);
  }
  const model = { digest: claims.model_digest, version: claims.model_version, image: claims.image_digest };
  const bindings = [...snapshot.models.values()].filter((m) => m.agentId === agent.id);
  const binding = attestedBinding(bindings, model);
  if (!binding) {
    const known = bindings.find((m) => m.modelDigest === model.digest);
    throw new AttestationRefusal('model_unknown', known ? `image ${String(model.image)} or version ${String(model.version)} is not the one bound with model ${String(model.digest)}` : `model ${String(model.digest)} is not bound to agent ${agent.id}`);
  }
  if (binding.status !== 'approved') throw new AttestationRefusal('model_not_approved', `model version ${binding.version} of agent ${agent.id} is ${binding.status}: it has no trading authority`);
  await refuseUsedJti(ctx, claims.jti);
  await consumeNonce(ctx, agent.id, claims.nonce);
  return { pipeline, binding, jti: claims.jti, keyStorage: keyStorage as KeyStorage, imageDigest: binding.imageDigest };
}

/** Whether `aud` names `issuer` and nobody else. */
function isOnlyAudience(aud: unknown, issuer: string): boolean {
  return aud === issuer || (Array.isArray(aud) && aud.length === 1 && aud[0] === issuer);
}

/**
 * The binding an attestation's image digest, model digest and version name. The same artifact may
 * be bound more than once — proposed again after a denial, or approved again after its retirement
 * (a rollback) — so an approved binding among them is the one it answers to; else any, to say why
 * it has no authority.
 */
function attestedBinding(bindings: ModelBinding[], model: { digest: unknown; version: unknown; image: unknown }): ModelBinding | undefined {
  const matching = bindings.filter((m) => m.modelDigest === model.digest && m.version === model.version && m.imageDigest === model.image);
  return matching.find((m) => m.status === 'approved') ?? matching[0];
}

/**
 * An attestation makes one certificate: its `jti` (RFC 7519 §4.1.7) already recorded for one is a
 * replay, whatever nonce it now answers (agent_credentials.attestation_jti is unique: two racing
 * are settled there, src/agents/credentials.ts).
 */
async function refuseUsedJti(ctx: Context, jti: string): Promise<void> {
  const used = await ctx.storage.db.selectFrom('agent_credentials').select('serial').where('attestation_jti', '=', jti).executeTakeFirst();
  if (used) throw new AttestationRefusal('replay', 'attestation jti was used for a certificate already: a pipeline signs a new attestation for each');
}

async function consumeNonce(ctx: Context, agentId: string, nonce: unknown): Promise<void> {
  if (typeof nonce !== 'string') throw new AttestationRefusal('nonce', 'attestation nonce must be a string');
  const now = ctx.clock.now();
  // One conditional update: of two attestations answering the same nonce, one consumes it.
  const used = await ctx.storage.db
    .updateTable('agent_nonces')
    .set({ used_at: now })
    .where('nonce_hash', '=', digest(nonce))
    .where('agent_id', '=', agentId)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (Number(used.numUpdatedRows) !== 1) throw new AttestationRefusal('nonce', 'attestation nonce is unknown, used or expired: ask for a new one');
}

function digest(nonce: string): string {
  return createHash('sha256').update(nonce).digest('base64url');
}
