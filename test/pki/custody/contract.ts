import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { CustodyError, type CustodyKeyType, type KeyCustody } from '../../../src/pki/custody/custody.ts';

/**
 * The one contract every key custody keeps (src/pki/custody/custody.ts), run for each
 * implementation: software (sealed keys) and PKCS#11 (softhsm2 through pkcs11-tool).
 */
export function custodyContract(name: string, make: (t: TestContext) => Promise<KeyCustody>): void {
  for (const type of ['EC-P256', 'Ed25519', 'RSA-3072'] as CustodyKeyType[]) {
    test(`${name}: a generated ${type} key loads by its ref with the same public key and signs what node:crypto verifies`, async (t) => {
      const custody = await make(t);
      const key = await custody.generate(`contract-${type.toLowerCase()}`, type);
      assert.equal(key.type, type);
      const loaded = await custody.load(key.ref);
      assert.ok(loaded.publicKey.equals(key.publicKey));
      const data = Buffer.from(`checkpoint for ${type}`);
      const signature = await loaded.sign(data);
      const ok =
        type === 'EC-P256'
          ? verify('sha256', data, { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, signature) && signature.length === 64
          : type === 'Ed25519'
            ? verify(null, data, key.publicKey, signature)
            : verify('sha256', data, key.publicKey, signature);
      assert.ok(ok, 'the signature verifies');
    });
  }

  test(`${name}: an unknown ref and a second key with the same label are refused`, async (t) => {
    const custody = await make(t);
    await custody.generate('contract-once', 'EC-P256');
    await assert.rejects(custody.generate('contract-once', 'EC-P256'), CustodyError);
    const bogus = custody.kind === 'software' ? 'software:00000000-0000-0000-0000-000000000000' : 'pkcs11:token=clearance-test;id=%de%ad%be%ef;type=private';
    await assert.rejects(custody.load(bogus), CustodyError);
  });
}
