import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';

/**
 * The browser's answers to a ceremony, as the page script posts them (the JSON of
 * PublicKeyCredential.toJSON(), WebAuthn L3 §5.1): checked for shape and size before anything
 * else reads them, so the verification code only ever sees well-formed members.
 */

/** Largest response accepted as text: an attestation with its certificate chain fits easily. */
export const maxResponseLength = 32 * 1024;

const base64url = /^[A-Za-z0-9_-]*$/;

function isB64(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= max && base64url.test(value);
}

function parseObject(text: string | undefined): Record<string, unknown> | undefined {
  if (!text || text.length > maxResponseLength) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function credentialCommon(value: Record<string, unknown>): { id: string; response: Record<string, unknown> } | undefined {
  // id and rawId are the same credential id (WebAuthn L3 §5.1: id is rawId, base64url).
  if (!isB64(value.id, 1364) || value.rawId !== value.id || value.type !== 'public-key') return undefined;
  const response = value.response;
  if (typeof response !== 'object' || response === null || Array.isArray(response)) return undefined;
  return { id: value.id, response: response as Record<string, unknown> };
}

/** An assertion (navigator.credentials.get), or undefined when it is not shaped like one. */
export function parseAuthenticationResponse(text: string | undefined): AuthenticationResponseJSON | undefined {
  const value = parseObject(text);
  const common = value && credentialCommon(value);
  if (!common) return undefined;
  const r = common.response;
  if (!isB64(r.clientDataJSON, 8192) || !isB64(r.authenticatorData, 8192) || !isB64(r.signature, 2048)) return undefined;
  if (r.userHandle !== undefined && r.userHandle !== null && !isB64(r.userHandle, 128)) return undefined;
  return {
    id: common.id,
    rawId: common.id,
    type: 'public-key',
    clientExtensionResults: {},
    response: {
      clientDataJSON: r.clientDataJSON,
      authenticatorData: r.authenticatorData,
      signature: r.signature,
      ...(typeof r.userHandle === 'string' ? { userHandle: r.userHandle } : {}),
    },
  };
}

const transportPattern = /^[a-z-]{1,32}$/;

/** A registration (navigator.credentials.create), or undefined when it is not shaped like one. */
export function parseRegistrationResponse(text: string | undefined): RegistrationResponseJSON | undefined {
  const value = parseObject(text);
  const common = value && credentialCommon(value);
  if (!common) return undefined;
  const r = common.response;
  if (!isB64(r.clientDataJSON, 8192) || !isB64(r.attestationObject, maxResponseLength)) return undefined;
  const transports = Array.isArray(r.transports) ? r.transports.filter((t): t is string => typeof t === 'string' && transportPattern.test(t)).slice(0, 8) : [];
  return {
    id: common.id,
    rawId: common.id,
    type: 'public-key',
    clientExtensionResults: {},
    response: { clientDataJSON: r.clientDataJSON, attestationObject: r.attestationObject, transports: [...new Set(transports)] },
  };
}

/** CollectedClientData (WebAuthn L3 §5.8.1), the members Clearance checks. */
export interface ClientData {
  type: string;
  challenge: string;
  origin: string;
  crossOrigin?: boolean;
  topOrigin?: string;
}

/** The client data of a response, decoded; undefined when it is not JSON of that shape. */
export function decodeClientData(clientDataJSON: string): ClientData | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8'));
    if (typeof value !== 'object' || value === null) return undefined;
    const data = value as Record<string, unknown>;
    if (typeof data.type !== 'string' || typeof data.challenge !== 'string' || typeof data.origin !== 'string') return undefined;
    return {
      type: data.type,
      challenge: data.challenge,
      origin: data.origin,
      ...(typeof data.crossOrigin === 'boolean' ? { crossOrigin: data.crossOrigin } : {}),
      ...(typeof data.topOrigin === 'string' ? { topOrigin: data.topOrigin } : {}),
    };
  } catch {
    return undefined;
  }
}

/** The fixed head of authenticator data (WebAuthn L3 §6.1): RP ID hash, flags, signature counter. */
export interface AuthenticatorDataHead {
  rpIdHash: Buffer;
  userPresent: boolean;
  userVerified: boolean;
  backupEligible: boolean;
  backedUp: boolean;
  signCount: number;
}

/** The head of authenticator data; undefined when it is shorter than 37 bytes. */
export function authenticatorDataHead(authenticatorData: Buffer): AuthenticatorDataHead | undefined {
  if (authenticatorData.length < 37) return undefined;
  const flags = authenticatorData[32]!;
  return {
    rpIdHash: authenticatorData.subarray(0, 32),
    userPresent: (flags & 0x01) !== 0,
    userVerified: (flags & 0x04) !== 0,
    backupEligible: (flags & 0x08) !== 0,
    backedUp: (flags & 0x10) !== 0,
    signCount: authenticatorData.readUInt32BE(33),
  };
}
