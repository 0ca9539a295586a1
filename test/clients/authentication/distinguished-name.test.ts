import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DistinguishedNameError,
  distinguishedNamesEqual,
  formatDn,
  parseNodeSubject,
  parseRfc4514,
} from '../../../src/clients/authentication/distinguished-name.ts';
import { makeCertificate } from './fixture.ts';

const same = (a: string, b: string) => distinguishedNamesEqual(parseRfc4514(a), parseRfc4514(b));

describe('RFC 4514 distinguished names', () => {
  test('reads Node subject lines in certificate order and returns them in RFC 4514 order', () => {
    const rdns = parseNodeSubject('C=DE\nO=Acme Clearing\nCN=oms-service');
    assert.equal(formatDn(rdns), 'CN=oms-service,O=Acme Clearing,C=DE');
    assert.ok(distinguishedNamesEqual(rdns, parseRfc4514('CN=oms-service,O=Acme Clearing,C=DE')));
  });

  test('matches attribute types regardless of letter case, long names and OIDs', () => {
    assert.ok(same('CN=svc,O=Acme,C=DE', 'cn=svc,o=Acme,c=DE'));
    assert.ok(same('CN=svc,O=Acme,C=DE', 'commonName=svc,organizationName=Acme,countryName=DE'));
    assert.ok(same('CN=svc,O=Acme,C=DE', '2.5.4.3=svc,2.5.4.10=Acme,OID.2.5.4.6=DE'));
    assert.ok(same('E=ops@acme.example', 'emailAddress=ops@acme.example'));
    assert.ok(same('organizationIdentifier=LEIXG-529900T8BM49AURSDO55', '2.5.4.97=LEIXG-529900T8BM49AURSDO55'));
  });

  test('tells surname (SN) apart from serialNumber', () => {
    assert.ok(!same('SN=1234', 'serialNumber=1234'));
    assert.ok(same('SN=Smith', 'surname=Smith'));
  });

  test('treats RDN order as significant', () => {
    assert.ok(!same('CN=svc,O=Acme', 'O=Acme,CN=svc'));
  });

  test('ignores the order of values inside a multi-valued RDN', () => {
    assert.ok(same('OU=Rates+OU=Credit,O=Acme', 'OU=Credit+OU=Rates,O=Acme'));
  });

  test('does not confuse a multi-valued RDN with two RDNs', () => {
    assert.ok(!same('OU=Rates+OU=Credit,O=Acme', 'OU=Rates,OU=Credit,O=Acme'));
  });

  test('compares values exactly: letter case matters', () => {
    assert.ok(!same('CN=oms-service', 'CN=OMS-SERVICE'));
  });

  test('ignores unescaped spaces around separators but keeps escaped ones', () => {
    assert.ok(same('CN=svc,O=Acme', 'CN = svc , O = Acme'));
    assert.ok(!same('CN=svc', 'CN=svc\\ '));
    assert.ok(same('CN=a b', 'CN=a b'));
    assert.ok(!same('CN=a b', 'CN=a  b'));
  });

  test('decodes escaped specials and hex pairs to the same value', () => {
    assert.ok(same('O=Acme\\, Inc.', 'O=Acme\\2C Inc.'));
    assert.ok(same('CN=a\\+b', 'CN=a\\2bb'));
    assert.ok(same('CN=Zürich', 'CN=Z\\C3\\BCrich'));
    assert.ok(same('CN=\\"quoted\\"\\\\x', 'CN=\\22quoted\\22\\5cx'));
    assert.deepEqual(parseRfc4514('O=Acme\\, Inc.,C=DE'), [[{ type: '2.5.4.10', value: 'Acme, Inc.' }], [{ type: '2.5.4.6', value: 'DE' }]]);
  });

  test('keeps an escaped comma inside one value instead of splitting the RDN', () => {
    assert.ok(!same('CN=svc\\,O=Evil,O=Acme', 'CN=svc,O=Evil,O=Acme'));
  });

  test('reads a control character Node escaped as hex, so a newline cannot forge another RDN', () => {
    const rdns = parseNodeSubject('O=Acme\nCN=svc\\0AO=Evil');
    assert.deepEqual(rdns, [[{ type: '2.5.4.3', value: 'svc\nO=Evil' }], [{ type: '2.5.4.10', value: 'Acme' }]]);
  });

  test('refuses malformed DNs', () => {
    for (const bad of ['', 'CN', 'CN=a,', 'CN=a;O=b', 'CN=#0403616263', 'CN=a\\q', '=a', 'C N=a', 'CN=\\C3']) {
      assert.throws(() => parseRfc4514(bad), DistinguishedNameError, bad);
    }
  });

  test('writes a canonical string that parses back to the same DN', () => {
    const dn = parseRfc4514('cn=" spaced\\, \\+ \\\\",ou=B+ou=A,2.5.4.97=X,1.2.3.4=y');
    assert.equal(formatDn(dn), 'CN=\\" spaced\\, \\+ \\\\\\",OU=A+OU=B,organizationIdentifier=X,1.2.3.4=y');
    assert.ok(distinguishedNamesEqual(parseRfc4514(formatDn(dn)), dn));
  });
});

describe('distinguished names of real certificates', () => {
  test('matches the subject of an openssl certificate with escaped and multi-valued attributes', () => {
    const { certificate } = makeCertificate({
      subject: '/C=DE/O=Acme, Inc. \\+ Co/OU=Rates+OU=Credit/CN=svc "one"\\\\x/2.5.4.97=LEIXG-529900T8BM49AURSDO55',
      multivalue: true,
    });
    const presented = parseNodeSubject(certificate.subject);
    assert.ok(distinguishedNamesEqual(presented, parseRfc4514('organizationIdentifier=LEIXG-529900T8BM49AURSDO55,CN=svc \\"one\\"\\\\x,OU=Credit+OU=Rates,O=Acme\\, Inc. \\+ Co,C=DE')));
    assert.ok(!distinguishedNamesEqual(presented, parseRfc4514('CN=svc \\"one\\"\\\\x,OU=Credit+OU=Rates,O=Acme\\, Inc. \\+ Co,C=DE')));
  });

  test('matches UTF-8 values of an openssl certificate', () => {
    const { certificate } = makeCertificate({ subject: '/C=CH/L=Zürich/CN=Händler' });
    assert.ok(distinguishedNamesEqual(parseNodeSubject(certificate.subject), parseRfc4514('CN=Händler,L=Zürich,C=CH')));
  });
});
