/**
 * `clearance/guard`: the resource-server library (the policy enforcement point). It verifies
 * Clearance access tokens and their sender binding, checks scopes and authorization_details,
 * asks the policy decision point, and keeps settlement-affecting instructions idempotent per
 * transaction. Framework-free; `clearance/guard/fastify` plugs it into fastify. docs/guard.md.
 *
 * It imports only jose, node: built-ins and src/jose (Clearance's dependency-free JOSE helpers,
 * which the server uses too) — never the server's modules — so it runs inside other services and
 * builds on its own (`npm run build:guard` emits dist/guard and dist/jose). Signed requests
 * (./signed-requests.ts) add the @peculiar ASN.1 schemas for their OCSP check (./ocsp.ts), and
 * its calls to Clearance carry the trace context through `@opentelemetry/api` (./trace-context.ts:
 * a no-op in a host without an OpenTelemetry SDK).
 */
export {
  createGuard,
  type ApprovalCheckRecord,
  type AuthenticationRequirement,
  type AuthorizationDetailCheck,
  type Binding,
  type Guard,
  type GuardOptions,
  type GuardRequest,
  type VerifiedAccess,
} from './guard.ts';
export { challengeValue, DuplicateInstructionError, GuardError, type GuardErrorCode, type InstructionRecord, type Scheme } from './errors.ts';
export {
  accessTokenHash,
  createDpopNonces,
  MemoryDpopReplayStore,
  normalizeHtu,
  type DpopNonceSource,
  type DpopReplayStore,
} from './dpop.ts';
export { actorChain, defaultAlgorithms, type AccessTokenClaims, type Actor, type AuthorizationDetail, type Confirmation } from './token.ts';
export { maxIntrospectionCacheSeconds, referenceTokenPrefix, type IntrospectionOptions } from './introspection.ts';
export type { PolicyDecision, PolicyOptions, PolicyQuestion } from './policy.ts';
export { acrLadder, acrSatisfies } from './acr.ts';
export {
  createIdempotencyGuard,
  fingerprintOf,
  MemoryIdempotencyStore,
  type IdempotencyGuard,
  type IdempotencyStore,
  type Instruction,
  type StoredInstruction,
} from './idempotency.ts';
export { SqliteIdempotencyStore, SqliteReplayStore } from './sqlite-store.ts';
export {
  createSsfReceiver,
  MemorySecurityEventRevocations,
  type ReceivedSecurityEvent,
  type SecurityEventRevocations,
  type SsfReceiver,
  type SsfReceiverAnswer,
  type SsfReceiverOptions,
} from './ssf.ts';
export { approvalDigest, entriesToApprove } from '../jose/approval-digest.ts';
export {
  checkContentDigest,
  contentDigest,
  MessageSignatureError,
  requiredComponents,
  signRequest,
  verifyRequest,
  type MessageSignatureErrorCode,
  type SignableRequest,
  type SignOptions,
  type VerifiedSignature,
  type VerifyOptions,
} from './message-signatures.ts';
export { createSignedRequestVerifier, SignedRequestError, type SignedRequest, type SignedRequestOptions, type SignedRequestResult } from './signed-requests.ts';
export {
  createEvidenceRecorder,
  evidenceAppendScope,
  evidenceStatement,
  EvidenceRecordError,
  payloadSha256,
  recordEvidence,
  signEvidenceStatement,
  type EvidenceClientAuth,
  type EvidenceEvent,
  type EvidenceRecorder,
  type EvidenceRecorderOptions,
  type EvidenceSigningKey,
  type EvidenceStatementFields,
  type RecordedExternalEvidence,
} from './evidence.ts';
export { traceContextHeaders } from './trace-context.ts';
