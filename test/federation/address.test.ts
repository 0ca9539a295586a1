import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyAddress } from '../../src/federation/address.ts';

const category = (address: string) => classifyAddress(address).category;

describe('classifying the addresses a partner URL resolves to', () => {
  test('private, loopback, link-local and CGNAT IPv4 ranges are private', () => {
    for (const address of ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.254', '192.168.1.1', '127.0.0.1', '127.8.9.10', '169.254.0.1', '169.254.254.254', '100.64.0.1', '100.127.255.255', '192.0.2.1', '198.18.0.1']) {
      assert.equal(category(address), 'private', address);
    }
    assert.equal(classifyAddress('127.0.0.1').label, 'loopback');
    assert.equal(classifyAddress('169.254.10.10').label, 'link-local');
    assert.equal(classifyAddress('100.64.1.1').label, 'shared address space (CGNAT, RFC 6598)');
  });

  test('private, loopback and link-local IPv6 ranges are private', () => {
    for (const address of ['::1', 'fc00::1', 'fd12:3456:789a::1', 'fe80::1', 'fe80::1%eth0', 'febf::1', '2001:db8::1']) {
      assert.equal(category(address), 'private', address);
    }
  });

  test('IPv4 addresses carried in IPv6 forms are classified as the IPv4 address they reach', () => {
    assert.deepEqual(classifyAddress('::ffff:127.0.0.1'), { category: 'private', label: 'loopback (IPv4-mapped IPv6)' });
    assert.equal(category('::ffff:7f00:1'), 'private', 'the hex form of ::ffff:127.0.0.1');
    assert.equal(category('::ffff:10.1.2.3'), 'private');
    assert.equal(category('::ffff:a9fe:a9fe'), 'never', '::ffff:169.254.169.254');
    assert.equal(category('64:ff9b::192.168.0.1'), 'private', 'NAT64');
    assert.equal(category('2002:0a00:0001::1'), 'private', '6to4 of 10.0.0.1');
    assert.equal(category('::ffff:8.8.8.8'), 'public');
  });

  test('unspecified, multicast, broadcast, reserved and the cloud metadata service are never fetched', () => {
    for (const address of ['0.0.0.0', '0.1.2.3', '224.0.0.1', '239.255.255.250', '255.255.255.255', '240.0.0.1', '169.254.169.254', '::', 'ff02::1', 'fd00:ec2::254', '4000::1', 'not-an-address']) {
      assert.equal(category(address), 'never', address);
    }
    assert.equal(classifyAddress('169.254.169.254').label, 'cloud metadata service');
  });

  test('global unicast addresses are public', () => {
    for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e']) {
      assert.equal(category(address), 'public', address);
    }
  });
});
