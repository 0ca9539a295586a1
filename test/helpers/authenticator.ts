/**
 * A software WebAuthn authenticator for protocol tests: an EC P-256 key per credential, the
 * authenticator data, client data and CBOR attestation object a browser would send (WebAuthn L3
 * §6.1, §6.5, §5.8.1), `none` or `packed` attestation. Every field can be bent to make the
 * negative cases (wrong origin, wrong RP ID, no user verification, a counter going backwards).
 *
 *   const authenticator = new SoftwareAuthenticator({ origin: 'http://localhost:9000' });
 *   const registration = authenticator.register(creationOptions);      // RegistrationResponseJSON
 *   const assertion = authenticator.assert(requestOptions);            // AuthenticationResponseJSON
 *
 * (Browser tests use Chromium's virtual authenticator instead.)
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

// --- CBOR (RFC 8949), the subset attestation objects and COSE keys use ---

type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor>;

function head(major: number, value: number): Buffer {
  if (value < 24) return Buffer.from([(major << 5) | value]);
  if (value < 0x100) return Buffer.from([(major << 5) | 24, value]);
  if (value < 0x10000) return Buffer.from([(major << 5) | 25, value >> 8, value & 0xff]);
  const out = Buffer.alloc(5);
  out[0] = (major << 5) | 26;
  out.writeUInt32BE(value, 1);
  return out;
}

export function cbor(value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value]);
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)]);
  return Buffer.concat([head(5, value.size), ...[...value].flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

// --- the authenticator ---

export interface StoredCredential {
  id: Buffer;
  key: KeyObject;
  rpId: string;
  userHandle: Buffer;
  signCount: number;
}

export interface AuthenticatorOptions {
  /** The origin the "browser" reports in client data. */
  origin: string;
  /** AAGUID, hyphenated; default all zeros (what `none` attestation discloses). */
  aaguid?: string;
  /** A synced passkey (BE and BS flags). */
  backupEligible?: boolean;
  /** `packed` attestation signed with this certificate's key (else `none`). */
  attestation?: { certificate: Buffer; key: KeyObject; chain?: Buffer[] };
  /** Counter step per assertion; 0 for authenticators that keep no counter. */
  counterStep?: number;
}

/** What a test may bend in one ceremony. */
export interface Bend {
  origin?: string;
  rpId?: string;
  type?: string;
  challenge?: string;
  userVerified?: boolean;
  crossOrigin?: boolean;
  /** Assertion: the signature counter to report. */
  signCount?: number;
  /** Assertion: answer with this credential (e.g. one not in allowCredentials). */
  credential?: StoredCredential;
  /** Assertion: the user handle to send (null: none, as U2F authenticators). */
  userHandle?: string | null;
  /** Assertion: the BE flag to report. */
  backupEligible?: boolean;
}

interface CreationOptions {
  challenge: string;
  rp: { id?: string };
  user: { id: string };
}

interface RequestOptions {
  challenge: string;
  rpId?: string;
  allowCredentials?: { id: string }[];
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest();

export class SoftwareAuthenticator {
  readonly credentials: StoredCredential[] = [];
  readonly options: AuthenticatorOptions;

  constructor(options: AuthenticatorOptions) {
    this.options = options;
  }

  #flags(bend: Bend, extra: number): number {
    const backupEligible = bend.backupEligible ?? this.options.backupEligible ?? false;
    return 0x01 | (bend.userVerified === false ? 0 : 0x04) | (backupEligible ? 0x18 : 0) | extra;
  }

  #clientData(type: string, challenge: string, bend: Bend): Buffer {
    return Buffer.from(JSON.stringify({ type: bend.type ?? type, challenge: bend.challenge ?? challenge, origin: bend.origin ?? this.options.origin, crossOrigin: bend.crossOrigin ?? false }));
  }

  /** navigator.credentials.create: a new credential for the options' RP and user. */
  register(options: CreationOptions, bend: Bend = {}): Record<string, unknown> {
    const rpId = bend.rpId ?? options.rp.id!;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const coseKey = cbor(
      new Map<number, Cbor>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
    const credential: StoredCredential = { id: randomBytes(16), key: privateKey, rpId, userHandle: Buffer.from(options.user.id, 'base64url'), signCount: 0 };
    const aaguid = Buffer.from((this.options.aaguid ?? '00000000-0000-0000-0000-000000000000').replace(/-/g, ''), 'hex');
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(credential.id.length);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([this.#flags(bend, 0x40)]), Buffer.alloc(4), aaguid, idLength, credential.id, coseKey]);
    const clientDataJSON = this.#clientData('webauthn.create', options.challenge, bend);
    const attestation = this.options.attestation;
    const attStmt = attestation
      ? new Map<string, Cbor>([
          ['alg', -7],
          ['sig', sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), attestation.key)],
          ['x5c', [attestation.certificate, ...(attestation.chain ?? [])]],
        ])
      : new Map<string, Cbor>();
    const attestationObject = cbor(new Map<string, Cbor>([['fmt', attestation ? 'packed' : 'none'], ['attStmt', attStmt], ['authData', authData]]));
    this.credentials.push(credential);
    return {
      id: b64(credential.id),
      rawId: b64(credential.id),
      type: 'public-key',
      clientExtensionResults: {},
      response: { clientDataJSON: b64(clientDataJSON), attestationObject: b64(attestationObject), transports: ['internal'] },
    };
  }

  /** navigator.credentials.get: an assertion by a credential the options allow (any of ours when none are listed). */
  assert(options: RequestOptions, bend: Bend = {}): Record<string, unknown> {
    const rpId = options.rpId!;
    const allowed = options.allowCredentials?.map((c) => c.id) ?? [];
    const credential =
      bend.credential ?? this.credentials.find((c) => c.rpId === rpId && (allowed.length === 0 || allowed.includes(b64(c.id))));
    if (!credential) throw new Error('the authenticator holds no credential these options allow');
    credential.signCount = bend.signCount ?? credential.signCount + (this.options.counterStep ?? 1);
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(credential.signCount);
    const authData = Buffer.concat([sha256(bend.rpId ?? rpId), Buffer.from([this.#flags(bend, 0)]), counter]);
    const clientDataJSON = this.#clientData('webauthn.get', options.challenge, bend);
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.key);
    return {
      id: b64(credential.id),
      rawId: b64(credential.id),
      type: 'public-key',
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64(clientDataJSON),
        authenticatorData: b64(authData),
        signature: b64(signature),
        ...(bend.userHandle === null ? {} : { userHandle: bend.userHandle ?? b64(credential.userHandle) }),
      },
    };
  }
}
