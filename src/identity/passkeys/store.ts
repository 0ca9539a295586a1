import type { Context } from '../../context.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';
import type { Database } from '../../storage/schema.ts';
import { acr, amr, type Acr } from '../acr.ts';
import { isAllowlistedHardware, type PasskeyAttestationPolicy } from './attestation.ts';

/** A person's passkey, as the rest of Clearance sees it. */
export interface Passkey {
  /** Clearance's handle (UUID). */
  id: string;
  /** The WebAuthn credential id, base64url. */
  credentialId: string;
  userId: string;
  name: string;
  /** The COSE_Key (RFC 9052 §7) as the authenticator gave it. */
  publicKey: Uint8Array<ArrayBuffer>;
  signCount: number;
  transports: string[];
  /** A synced passkey: its private key may leave the device (WebAuthn L3 §6.1.3, BE flag). */
  backupEligible: boolean;
  backedUp: boolean;
  aaguid: string;
  attestationFormat: string;
  /** Its attestation chained to a configured root at registration. */
  attested: boolean;
  createdAt: number;
  lastUsedAt: number | null;
}

type PasskeyRow = Database['passkeys'];

/** A person holds at most this many passkeys (each is a row and an entry of allowCredentials). */
export const maxPasskeysPerPerson = 20;

/** Credential ids are at most 1023 bytes (WebAuthn L3 §5.8.3): 1364 base64url characters. */
export const maxCredentialIdLength = 1364;

export function passkeyFromRow(row: PasskeyRow): Passkey {
  return {
    id: row.id,
    credentialId: row.credential_id,
    userId: row.user_id,
    name: row.name,
    publicKey: new Uint8Array(Buffer.from(row.public_key, 'base64url')),
    signCount: Number(row.sign_count),
    transports: JSON.parse(row.transports) as string[],
    backupEligible: Number(row.backup_eligible) === 1,
    backedUp: Number(row.backed_up) === 1,
    aaguid: row.aaguid,
    attestationFormat: row.attestation_format,
    attested: Number(row.attested) === 1,
    createdAt: Number(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
  };
}

type StoreContext = Pick<Context, 'storage'>;

/** A person's passkeys, oldest first; with `flight`, read with its other statements. */
export async function listPasskeys(ctx: StoreContext, userId: string, flight?: Flight): Promise<Passkey[]> {
  const rows = await rowsOf(ctx.storage.db.selectFrom('passkeys').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id'), flight);
  return rows.map(passkeyFromRow);
}

/** The passkey with this WebAuthn credential id; with `flight`, read with its other statements. */
export async function passkeyByCredentialId(ctx: StoreContext, credentialId: string, flight?: Flight): Promise<Passkey | undefined> {
  if (credentialId.length === 0 || credentialId.length > maxCredentialIdLength) return undefined;
  const rows = await rowsOf(ctx.storage.db.selectFrom('passkeys').selectAll().where('credential_id', '=', credentialId), flight);
  return rows[0] && passkeyFromRow(rows[0]);
}

/**
 * The authentication level a sign-in with this passkey reaches (docs/authentication.md):
 * `urn:clearance:acr:phrh` for a device-bound passkey whose attestation chained to a configured
 * root and whose model (AAGUID) is on the operator's list today; else `urn:clearance:acr:phr`.
 * The list is read at each sign-in, so removing a model from it lowers its passkeys at once.
 */
export function passkeyAcr(passkey: Pick<Passkey, 'attested' | 'backupEligible' | 'aaguid'>, policy: PasskeyAttestationPolicy | undefined): Acr {
  return passkey.attested && !passkey.backupEligible && isAllowlistedHardware(policy, passkey.aaguid) ? acr.phishingResistantHardware : acr.phishingResistant;
}

/**
 * RFC 8176 §2 method references of a passkey sign-in with user verification. `swk` for a synced
 * (backup-eligible) passkey: its private key is copied between devices by a sync provider, so it
 * is a software-protected key as far as Clearance can know; `hwk` for a device-bound one, whose
 * key never leaves its authenticator. `user` for the verification the authenticator made (PIN or
 * biometric), and `mfa`: possession of the key plus that verification are two factors.
 */
export function passkeyAmr(passkey: Pick<Passkey, 'backupEligible'>): string[] {
  return [passkey.backupEligible ? amr.softwareKey : amr.hardwareKey, amr.user, amr.multiFactor];
}

const controlCharacters = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** A passkey name as typed, trimmed: 1–64 characters, no control characters; else undefined. */
export function passkeyName(raw: string | undefined): string | undefined {
  const name = (raw ?? '').trim();
  if (name.length === 0 || [...name].length > 64 || controlCharacters.test(name)) return undefined;
  return name;
}
