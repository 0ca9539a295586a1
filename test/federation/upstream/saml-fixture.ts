/**
 * What the SAML identity-brokering tests start from (over HTTP in ./saml-sign-in.test.ts, in
 * Chromium in test/browser/saml-sign-in.test.ts).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { startDeskApp, type DeskApp } from '../../helpers/desk-app.ts';
import { bankEntityId, makeSigningKey, samlClass, samlIdp, type ResponseChanges, type TestSamlIdp } from './saml-idp.ts';

export const bankLei = '529900T8BM49AURSDO55';
export const acr = { pwd: 'urn:clearance:acr:pwd', mfa: 'urn:clearance:acr:mfa', phr: 'urn:clearance:acr:phr' };

export interface SamlHarness extends DeskApp {
  idp: TestSamlIdp;
  spMetadata: string;
}

/**
 * A listening Clearance with the desk application and a partner bank whose people sign in through
 * its SAML IdP (samlify, ./saml-idp.ts): `ssoUrl` where the IdP's SSO endpoint is (a test that
 * serves one, on loopback), `host: 'localhost'` for Chromium (the IdP on 127.0.0.1: another site).
 */
export async function startSaml(t: TestContext, options: { requireSigned?: 'assertion' | 'response' | 'either'; ssoUrl?: string; host?: 'localhost' } = {}): Promise<SamlHarness> {
  const desk = await startDeskApp(t, { ...(options.host ? { host: options.host } : {}) });
  const signing = makeSigningKey();
  await desk.server.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [{ lei: bankLei, name: 'Bank B', jurisdiction: 'GB', home_region: 'eu', roles: ['custodian'], desks: [{ id: 'bank-b-treasury', name: 'Treasury' }] }],
    identity_providers: [
      {
        id: 'bank-b',
        kind: 'saml',
        name: 'Bank B',
        issuer: bankEntityId,
        sso_url: options.ssoUrl ?? 'https://idp.bank-b.example/sso',
        ...(options.ssoUrl ? { allow_private_network: true } : {}),
        slo_url: 'https://idp.bank-b.example/slo',
        certificates: [signing.certificate],
        ...(options.requireSigned ? { require_signed: options.requireSigned } : {}),
        legal_entity: bankLei,
        desks: ['bank-b-treasury'],
        domains: ['bank-b.example'],
        claims: { name: 'displayName', email: 'mail', username: 'uid' },
        acr: { map: { [samlClass.x509]: acr.mfa, [samlClass.smartcard]: acr.phr }, max: acr.mfa },
      },
    ],
  });
  const metadata = await fetch(`${desk.server.issuer}/broker/saml/metadata`);
  assert.equal(metadata.status, 200);
  assert.match(metadata.headers.get('content-type')!, /samlmetadata\+xml/);
  const spMetadata = await metadata.text();
  return { ...desk, idp: samlIdp(spMetadata, signing), spMetadata };
}


/** Olga, the bank's treasurer, as its IdP asserts her: two-factor (X509). */
export const olga: ResponseChanges = { nameId: 'olga-7731', attributes: { mail: 'olga@bank-b.example', displayName: 'Olga Treasurer', uid: 'olga' }, authnContextClassRef: samlClass.x509 };
