import { randomUUID } from 'node:crypto';
import {
  generateRegistrationOptions,
  SettingsService,
  verifyRegistrationResponse,
  type PublicKeyCredentialCreationOptionsJSON,
} from '@simplewebauthn/server';
import { decodeAttestationObject } from '@simplewebauthn/server/helpers';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { refusedFor, type Flight } from '../../storage/flight.ts';
import type { User } from '../users.ts';
import { acceptedFormats, chainedFormats, chainsToRoot, rolesRequiringAttestation } from './attestation.ts';
import { challengeBytes, consumeChallenge, issueChallenge } from './challenges.ts';
import { ceremonyTimeoutMs } from './options.ts';
import { relyingParty } from './relying-party.ts';
import { decodeClientData, parseRegistrationResponse } from './responses.ts';
import { listPasskeys, maxCredentialIdLength, maxPasskeysPerPerson, type Passkey } from './store.ts';

/**
 * Registering a passkey (WebAuthn L3 §7.1 "Registering a New Credential") for a signed-in person,
 * from the account page.
 */

// The library's attestation verifiers check certificate chains against roots of their own (Apple's,
// Google's) and would fetch the CRLs the certificates name. Clearance gives them none — nothing is
// fetched, and an empty list makes them check the statement's signature only — and checks every
// chain itself against the operator's roots (attestation.ts chainsToRoot). The setting is the
// library's, process-wide; this module is its only user.
for (const identifier of ['packed', 'fido-u2f', 'tpm', 'apple', 'android-key', 'android-safetynet', 'mds'] as const) {
  SettingsService.setRootCertificates({ identifier, certificates: [] });
}

/** COSE algorithms accepted (RFC 9053): ES256, EdDSA (Ed25519), RS256 — what authenticators make. */
export const supportedAlgorithms: readonly number[] = [-7, -8, -257];

type RegistrationContext = Pick<Context, 'storage' | 'clock' | 'config' | 'audit'>;

/**
 * The creation options for `person` (navigator.credentials.create, WebAuthn L3 §5.4), with a new
 * challenge bound to their session (`binding`). A discoverable credential (so it signs in without
 * a username) with user verification, required; the person's passkeys excluded (one per
 * authenticator). Attestation `direct` only for a person whose role requires attested hardware,
 * else `none` (the browser then discloses nothing about the authenticator).
 */
export async function registrationOptions(
  ctx: RegistrationContext,
  person: Pick<User, 'id' | 'username' | 'name' | 'roles'>,
  binding: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const rp = relyingParty(ctx.config.issuer);
  const existing = await listPasskeys(ctx, person.id);
  const challenge = await issueChallenge(ctx, { purpose: 'register', binding, userId: person.id });
  const attestation = rolesRequiringAttestation(ctx.config.passkeyAttestation, person.roles).length > 0;
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: person.username,
    userDisplayName: person.name ?? person.username,
    // The user handle is the person's id (the `sub` of their tokens: no personal data).
    userID: new Uint8Array(Buffer.from(person.id, 'utf8')),
    challenge: challengeBytes(challenge),
    timeout: ceremonyTimeoutMs,
    attestationType: attestation ? 'direct' : 'none',
    excludeCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
    supportedAlgorithmIDs: [...supportedAlgorithms],
  });
}

/** Why a registration was refused (audit); `message` is what the person is told. */
export type RegistrationFailure =
  | 'malformed'
  | 'challenge_unknown'
  | 'wrong_person'
  | 'cross_origin'
  | 'unsupported_attestation'
  | 'verification_failed'
  | 'attestation_required'
  | 'already_registered'
  | 'too_many_passkeys';

export type RegistrationOutcome = { ok: true; passkey: Passkey } | { ok: false; reason: RegistrationFailure; message: string };

const messages: Record<RegistrationFailure, string> = {
  malformed: 'The passkey could not be added. Try again.',
  challenge_unknown: 'The passkey request expired or was already used. Try again.',
  wrong_person: 'The passkey could not be added. Try again.',
  cross_origin: 'The passkey could not be added. Try again.',
  unsupported_attestation: 'This authenticator is not accepted for your role. Use one your organisation issued.',
  verification_failed: 'The passkey could not be verified. Try again, and unlock your authenticator when it asks.',
  attestation_required: 'Your role requires a hardware security key your organisation approved. This authenticator is not one of them.',
  already_registered: 'This passkey is already registered.',
  too_many_passkeys: `You have ${maxPasskeysPerPerson} passkeys, the most allowed. Remove one before adding another.`,
};

/**
 * Verifies a registration response for `person` and stores the passkey. Its rules, in order:
 * 1. a response not shaped like a registration fails (`malformed`);
 * 2. its challenge is consumed, once, if it was issued to this person's session for a
 *    registration (`challenge_unknown`, `wrong_person` otherwise);
 * 3. a cross-origin ceremony (never one of Clearance's pages) fails; so does an attestation format
 *    Clearance does not verify offline (`unsupported_attestation`);
 * 4. the library verifies the rest of WebAuthn L3 §7.1: type `webauthn.create`, the challenge, the
 *    origin exactly, the RP ID hash, user presence and verification, an accepted algorithm, the
 *    attestation statement's signature (`verification_failed`);
 * 5. the attestation is `attested` when its x5c chain leads to a configured root (chainsToRoot); a
 *    person holding a role the attestation policy lists must register an attested, device-bound
 *    passkey whose AAGUID is on every such role's list (`attestation_required`);
 * 6. at most `maxPasskeysPerPerson`; a credential id registered before is refused
 *    (`already_registered`);
 * 7. stored with `passkey.registered` and the `factor.added` alert in one transaction.
 * Every failure is audited as `passkey.registration_failed` with its reason.
 */
export async function registerPasskey(
  ctx: RegistrationContext,
  input: {
    person: Pick<User, 'id' | 'roles'>;
    name: string;
    credential: string | undefined;
    binding: string;
    requestId?: string;
    /** The transaction the passkey is part of (a recovery's enrolment: its request id), on `passkey.registered`. */
    txn?: string;
    sourceAddress: string;
    /**
     * Statements and events of the caller's that must commit with the passkey or not at all (a
     * recovery's enrolment link used once, src/identity/recovery): added to the transaction of
     * rule 7. A FlightRefused of theirs propagates to the caller.
     */
    within?: (flight: Flight, now: number) => AuditEvent[];
  },
): Promise<RegistrationOutcome> {
  const rp = relyingParty(ctx.config.issuer);
  const person = input.person;
  const fail = async (reason: RegistrationFailure, credentialId?: string): Promise<RegistrationOutcome> => {
    await ctx.audit.record({
      type: 'passkey.registration_failed',
      ...(input.requestId ? { requestId: input.requestId } : {}),
      actor: person.id,
      subject: person.id,
      decision: { allow: false, reasons: [reason] },
      details: { ...(credentialId ? { credential: credentialId } : {}), source_address: input.sourceAddress },
    });
    return { ok: false, reason, message: messages[reason] };
  };

  const response = parseRegistrationResponse(input.credential);
  const clientData = response && decodeClientData(response.response.clientDataJSON);
  if (!response || !clientData) return fail('malformed');
  const challenge = await consumeChallenge(ctx, clientData.challenge, { purposes: ['register'], binding: input.binding });
  if (!challenge) return fail('challenge_unknown', response.id);
  if (challenge.userId !== person.id) return fail('wrong_person', response.id);
  // Clearance's pages are never framed (frame-ancestors 'none').
  if (clientData.crossOrigin === true || clientData.topOrigin !== undefined) return fail('cross_origin', response.id);

  let format: string;
  let x5c: Uint8Array[] = [];
  try {
    const decoded = decodeAttestationObject(new Uint8Array(Buffer.from(response.response.attestationObject, 'base64url')));
    format = decoded.get('fmt');
    const chain = decoded.get('attStmt').get('x5c');
    if (Array.isArray(chain)) x5c = chain;
  } catch {
    return fail('malformed', response.id);
  }
  if (typeof format !== 'string' || !acceptedFormats.has(format)) return fail('unsupported_attestation', response.id);

  let info;
  try {
    const verified = await verifyRegistrationResponse({
      response,
      expectedChallenge: clientData.challenge,
      expectedOrigin: rp.origin, // WebAuthn L3 §7.1 step 9: exactly the issuer's origin
      expectedRPID: rp.id, // step 13: the RP ID hash
      requireUserPresence: true,
      requireUserVerification: true, // step 15: userVerification is "required"
      supportedAlgorithmIDs: [...supportedAlgorithms],
    });
    if (!verified.verified) return fail('verification_failed', response.id);
    info = verified.registrationInfo;
  } catch {
    return fail('verification_failed', response.id);
  }
  const credentialId = info.credential.id;
  // The id the authenticator data names is the credential's (WebAuthn L3 §6.5.1); the response's
  // must be the same, and at most 1023 bytes (§5.8.3).
  if (credentialId !== response.id || credentialId.length > maxCredentialIdLength) return fail('malformed', response.id);
  const backupEligible = info.credentialDeviceType === 'multiDevice';
  const policy = ctx.config.passkeyAttestation;
  const attested = policy !== undefined && chainedFormats.has(format) && chainsToRoot(x5c, policy.roots, new Date(ctx.clock.now()));
  const requiring = rolesRequiringAttestation(policy, person.roles);
  if (requiring.length > 0) {
    // A synced passkey's key can leave the device: it is not the hardware a role asks for.
    const meets = attested && !backupEligible && requiring.every((role) => policy!.roles[role]!.includes(info.aaguid));
    if (!meets) return fail('attestation_required', credentialId);
  }

  const now = ctx.clock.now();
  const passkey: Passkey = {
    id: randomUUID(),
    credentialId,
    userId: person.id,
    name: input.name,
    publicKey: new Uint8Array(info.credential.publicKey),
    signCount: info.credential.counter,
    transports: response.response.transports ?? [],
    backupEligible,
    backedUp: info.credentialBackedUp,
    aaguid: info.aaguid,
    attestationFormat: format,
    attested,
    createdAt: now,
    lastUsedAt: null,
  };
  const db = ctx.storage.db;
  const flight = ctx.storage.flight();
  // Inserted only while the person holds fewer than the maximum, and only if no passkey has this
  // credential id: one conditional statement, so two registrations racing cannot pass either limit.
  void flight.run(
    db
      .insertInto('passkeys')
      .columns(['id', 'credential_id', 'user_id', 'name', 'public_key', 'sign_count', 'transports', 'backup_eligible', 'backed_up', 'aaguid', 'attestation_format', 'attested', 'created_at', 'last_used_at'])
      .expression(
        db
          .selectNoFrom((eb) => [
            eb.val(passkey.id).as('id'),
            eb.val(credentialId).as('credential_id'),
            eb.val(person.id).as('user_id'),
            eb.val(passkey.name).as('name'),
            eb.val(Buffer.from(passkey.publicKey).toString('base64url')).as('public_key'),
            eb.val(passkey.signCount).as('sign_count'),
            eb.val(JSON.stringify(passkey.transports)).as('transports'),
            eb.val(backupEligible ? 1 : 0).as('backup_eligible'),
            eb.val(passkey.backedUp ? 1 : 0).as('backed_up'),
            eb.val(passkey.aaguid).as('aaguid'),
            eb.val(format).as('attestation_format'),
            eb.val(attested ? 1 : 0).as('attested'),
            eb.val(now).as('created_at'),
            eb.val(null).as('last_used_at'),
          ])
          .where((eb) => eb.not(eb.exists(eb.selectFrom('passkeys').select('id').where('credential_id', '=', credentialId))))
          .where((eb) => eb(eb.selectFrom('passkeys').select((e) => e.fn.countAll().as('n')).where('user_id', '=', person.id), '<', maxPasskeysPerPerson)),
      ),
    { rows: 1, otherwise: 'passkey_not_inserted' },
  );
  const event: AuditEvent = {
    type: 'passkey.registered',
    ...(input.txn !== undefined ? { txn: input.txn } : {}),
    ...(input.requestId ? { requestId: input.requestId } : {}),
    actor: person.id,
    subject: person.id,
    details: {
      credential: credentialId,
      passkey: passkey.id,
      name: passkey.name,
      aaguid: passkey.aaguid,
      attestation_format: format,
      attested,
      backup_eligible: backupEligible,
      transports: passkey.transports,
      source_address: input.sourceAddress,
    },
  };
  // The person's security contact is told a factor was added (docs/authentication.md "Who may
  // change factors"): a passkey someone else added signs in as the person from now on, so the
  // person — not only the audit log — must hear of it. In the insert's transaction: raised iff it committed.
  void flight.run(
    alertInsert(db, ctx.clock, {
      type: 'factor.added',
      subject: person.id,
      data: { factor: 'passkey', credential: credentialId, passkey: passkey.id, name: passkey.name, user: person.id, source_address: input.sourceAddress },
    }),
  );
  const theirs = input.within ? input.within(flight, now) : [];
  try {
    await ctx.audit.commit(flight, [event, ...theirs]);
  } catch (error) {
    if (!refusedFor(error, 'passkey_not_inserted')) throw error;
    const taken = await db.selectFrom('passkeys').select('id').where('credential_id', '=', credentialId).executeTakeFirst();
    return fail(taken ? 'already_registered' : 'too_many_passkeys', credentialId);
  }
  return { ok: true, passkey };
}
