import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { pseudonymKeyOf } from '../../src/audit/subject-keys.ts';
import { ManualClock } from '../../src/clock.ts';
import { consoleKey } from '../../src/console/client.ts';
import { deviceCookie, deviceCookieKey, newDeviceId, presentedDeviceId } from '../../src/identity/device-cookie.ts';
import { pairwiseKey } from '../../src/identity/pairwise.ts';
import { attachKeyring, masterKeyId, MasterKeyUnavailableError, setSealing, type Keyring } from '../../src/keys/keyring.ts';
import { authenticationKey, derivedKey } from '../../src/keys/master-key.ts';
import { DpopNonces, dpopNonceSecret } from '../../src/tokens/dpop.ts';

// What authenticates follows the master key that seals now; what names stays with the database's
// root (src/keys/master-key.ts authenticationKey and derivedKey, docs/keys.md "The master key").

const hkdf = (input: Buffer, info: string) => Buffer.from(hkdfSync('sha256', input, Buffer.alloc(0), info, 32));

/** A process's master key mid-rotation: configured with the new key and the previous one, sealing with the previous until a rewrap begins. */
function rotatingKeyring(): Keyring {
  const keyring: Keyring = { current: randomBytes(32), previous: randomBytes(32), sealing: undefined, root: randomBytes(32) };
  keyring.sealing = keyring.previous;
  attachKeyring(keyring);
  return keyring;
}

/** The Cookie header of a browser given a device cookie made with `key`, and its id. */
function cookieMadeWith(key: Buffer): { id: string; header: string } {
  const id = newDeviceId();
  const setCookie = deviceCookie({ config: { issuer: 'https://login.example.com' }, identity: { deviceCookieKey: key } } as Parameters<typeof deviceCookie>[0], id);
  return { id, header: setCookie.split(';')[0]! };
}

describe('keys derived from the master key', () => {
  test('a bare key (no keyring attached) derives both kinds from itself, a different key for each purpose', () => {
    const bare = randomBytes(32);
    assert.deepEqual(derivedKey(bare, 'clearance pairwise-subject v1'), hkdf(bare, 'clearance pairwise-subject v1'));
    assert.deepEqual(authenticationKey(bare, 'clearance device-cookie v1'), hkdf(bare, 'clearance device-cookie v1'));
    assert.notDeepEqual(authenticationKey(bare, 'clearance device-cookie v1'), authenticationKey(bare, 'clearance dpop-nonce v1'));
    assert.ok(!authenticationKey(bare, 'clearance device-cookie v1').equals(bare), 'never the key itself');
  });

  test('identifier keys derive from the root and stay when sealing moves to the new key; authentication keys derive from the sealing key and move with it', () => {
    const keyring = rotatingKeyring();
    const master = keyring.current;
    const identifiers = () => ({ pairwise: pairwiseKey(master), pseudonym: pseudonymKeyOf(master) });
    const before = identifiers();
    assert.deepEqual(before.pairwise, hkdf(keyring.root, 'clearance pairwise-subject v1'), 'from the root, not from either master key');
    assert.deepEqual(authenticationKey(master, 'clearance device-cookie v1'), hkdf(keyring.previous!, 'clearance device-cookie v1'), 'from the key that seals: the previous one until the rewrap begins');
    assert.deepEqual(deviceCookieKey(master), authenticationKey(master, 'clearance device-cookie v1'));
    assert.deepEqual(dpopNonceSecret(master), authenticationKey(master, 'clearance dpop-nonce v1'));
    const consoleBefore = consoleKey(master).publicJwk;

    // The rewrap begins: the new key seals.
    setSealing(keyring, keyring.current);
    assert.deepEqual(identifiers(), before, 'pairwise subjects and pseudonyms unchanged');
    assert.deepEqual(authenticationKey(master, 'clearance device-cookie v1'), hkdf(keyring.current, 'clearance device-cookie v1'));
    assert.notDeepEqual(deviceCookieKey(master), hkdf(keyring.previous!, 'clearance device-cookie v1'));
    assert.notDeepEqual(consoleKey(master).publicJwk, consoleBefore, 'the console client key follows it');
    assert.deepEqual(consoleKey(master).publicJwk, consoleKey(Buffer.from(keyring.current)).publicJwk, 'what the new key alone derives');
  });

  test('on a node that holds the sealing key no longer, authentication keys fail closed and identifier keys still derive', () => {
    const keyring = rotatingKeyring();
    const master = keyring.current;
    const pairwise = pairwiseKey(master);
    setSealing(keyring, undefined, masterKeyId(randomBytes(32)));
    for (const derive of [() => authenticationKey(master, 'clearance device-cookie v1'), () => deviceCookieKey(master), () => dpopNonceSecret(master), () => consoleKey(master)]) {
      assert.throws(derive, MasterKeyUnavailableError);
    }
    assert.deepEqual(pairwiseKey(master), pairwise);
  });

  test('a device cookie made before the rewrap began no longer verifies after it; one made after does', () => {
    const keyring = rotatingKeyring();
    const master = keyring.current;
    const old = cookieMadeWith(deviceCookieKey(master));
    assert.equal(presentedDeviceId(deviceCookieKey(master), old.header, 'https://login.example.com'), old.id);
    setSealing(keyring, keyring.current);
    assert.equal(presentedDeviceId(deviceCookieKey(master), old.header, 'https://login.example.com'), undefined, 'a new device once');
    const fresh = cookieMadeWith(deviceCookieKey(master));
    assert.equal(presentedDeviceId(deviceCookieKey(master), fresh.header, 'https://login.example.com'), fresh.id);
    // Anyone holding only the old master key forges nothing accepted now.
    const forged = cookieMadeWith(hkdf(keyring.previous!, 'clearance device-cookie v1'));
    assert.equal(presentedDeviceId(deviceCookieKey(master), forged.header, 'https://login.example.com'), undefined);
  });

  test('DPoP nonces read the secret at each use: a nonce issued before the rewrap began is refused after it, within its window', () => {
    const keyring = rotatingKeyring();
    const master = keyring.current;
    const nonces = new DpopNonces(() => dpopNonceSecret(master), new ManualClock());
    const before = nonces.current();
    assert.equal(nonces.isValid(before), true);
    setSealing(keyring, keyring.current);
    assert.equal(nonces.isValid(before), false);
    const after = nonces.current();
    assert.notEqual(after, before);
    assert.equal(nonces.isValid(after), true);
    // Nor can the old master key make a nonce accepted now.
    const oldKeyNonces = new DpopNonces(hkdf(keyring.previous!, 'clearance dpop-nonce v1'), new ManualClock());
    assert.equal(nonces.isValid(oldKeyNonces.current()), false);
    // A node left without the sealing key issues none and accepts none.
    setSealing(keyring, undefined, 'elsewhere');
    assert.throws(() => nonces.current(), MasterKeyUnavailableError);
    assert.throws(() => nonces.isValid(after), MasterKeyUnavailableError);
  });
});
