import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isLoopbackHost } from '../../src/jose/loopback.ts';

/** The hostname `URL` gives for a written host, as every caller passes it. */
const hostOf = (written: string) => new URL(`http://${written}/`).hostname;

describe('what counts as a loopback host', () => {
  test('localhost, 127/8, ::1 and IPv4-mapped 127/8, however the URL writes them', () => {
    for (const written of ['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '127.255.255.255', '127.1', '0x7f000001', '[::1]', '[0:0:0:0:0:0:0:1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:2]']) {
      assert.ok(isLoopbackHost(hostOf(written)), written);
    }
  });

  test('a bare address or name, without brackets', () => {
    for (const host of ['::1', '::ffff:127.0.0.1', '127.0.0.1', 'localhost']) assert.ok(isLoopbackHost(host), host);
  });

  test('not names that only begin or end like one, nor names under .localhost, which a resolver may send to DNS', () => {
    for (const written of ['localhost.', 'api.localhost', 'localhost.example.com', '127.0.0.1.nip.io', 'loopback', 'example.com']) {
      assert.ok(!isLoopbackHost(hostOf(written)), written);
    }
  });

  test('not other addresses of this machine or its networks, nor forms that carry 127/8 off it', () => {
    // 0.0.0.0 and :: reach this machine on some systems, but name no host to send to; NAT64,
    // 6to4 and IPv4-compatible forms are routed, not looped back.
    for (const written of ['0.0.0.0', '128.0.0.1', '10.0.0.1', '[::]', '[::2]', '[fe80::1]', '[::ffff:10.0.0.1]', '[::ffff:8000:1]', '[64:ff9b::7f00:1]', '[2002:7f00:1::1]', '[::127.0.0.1]']) {
      assert.ok(!isLoopbackHost(hostOf(written)), written);
    }
  });

  test('not text that is neither a name nor an address', () => {
    for (const host of ['', '[]', '[::1', '::1]', '[localhost]', 'fe80::1%lo', '127.0.0.1:80']) assert.ok(!isLoopbackHost(host), host);
  });
});
