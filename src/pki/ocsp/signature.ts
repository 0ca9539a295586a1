import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { rawToDer } from '../../jose/signature.ts';
import type { CustodyKey } from '../custody/custody.ts';

const ecdsaWithSha256 = '1.2.840.10045.4.3.2';
const ed25519 = '1.3.101.112';
const sha256WithRsa = '1.2.840.113549.1.1.11';

/** The X.509 signature algorithm of a custody key (RFC 5758 §3.2, RFC 8410 §3, RFC 4055 §5). */
export function signatureAlgorithmOf(key: Pick<CustodyKey, 'type'>): AlgorithmIdentifier {
  switch (key.type) {
    case 'EC-P256':
      // RFC 5758 §3.2: the parameters field MUST be absent.
      return new AlgorithmIdentifier({ algorithm: ecdsaWithSha256 });
    case 'Ed25519':
      return new AlgorithmIdentifier({ algorithm: ed25519 });
    case 'RSA-3072':
      return new AlgorithmIdentifier({ algorithm: sha256WithRsa, parameters: new Uint8Array([0x05, 0x00]).buffer });
  }
}

/** Signs `tbs` with a custody key, in the form an X.509 structure embeds (ECDSA: DER). */
export async function x509Signature(key: CustodyKey, tbs: Uint8Array): Promise<ArrayBuffer> {
  const signature = await key.sign(tbs);
  const embedded = key.type === 'EC-P256' ? rawToDer(signature) : signature;
  return embedded.buffer.slice(embedded.byteOffset, embedded.byteOffset + embedded.byteLength) as ArrayBuffer;
}
