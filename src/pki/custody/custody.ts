import type { KeyObject } from 'node:crypto';

/**
 * Key custody: where the private keys of the CA (root, issuing intermediate, OCSP responder) and
 * of the audit log live, and the one way anything signs with them. Two implementations:
 * `software` (keys sealed with the master key, opened in memory; the default) and `pkcs11`
 * (keys generated in and never leaving a PKCS#11 token, driven through `pkcs11-tool`).
 *
 * Token-signing keys (src/keys/keystore.ts) stay in software for throughput (a PKCS#11 signature
 * through a subprocess costs milliseconds, a software ES256 signature ~30 µs); a custody key has
 * the same shape, so an HSM-backed token key is a change of implementation, not of interface.
 */

/** The key types custody holds: ECDSA P-256 (CA, OCSP), Ed25519 (audit), RSA-3072 (interop roots). */
export type CustodyKeyType = 'EC-P256' | 'Ed25519' | 'RSA-3072';

export interface CustodyKey {
  /** Opaque reference, stored beside what the key signs (e.g. `software:<id>` or a `pkcs11:` URI). */
  readonly ref: string;
  readonly type: CustodyKeyType;
  readonly publicKey: KeyObject;
  /**
   * Signs `data` (the whole message; custody hashes it: SHA-256 for ECDSA and RSA PKCS#1 v1.5,
   * none for Ed25519). ECDSA signatures come back as IEEE P1363 (R ‖ S, 64 bytes), the WebCrypto
   * and JOSE form; X.509 structures convert to DER where they embed one.
   */
  sign(data: Uint8Array): Promise<Buffer>;
}

export interface KeyCustody {
  readonly kind: 'software' | 'pkcs11';
  /** Creates a key labelled `label` (unique within the custody) and returns it. */
  generate(label: string, type: CustodyKeyType): Promise<CustodyKey>;
  /** Loads a key by the `ref` that `generate` returned. Throws CustodyError if it is gone. */
  load(ref: string): Promise<CustodyKey>;
}

export class CustodyError extends Error {
  override name = 'CustodyError';
}
