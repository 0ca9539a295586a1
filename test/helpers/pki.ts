/**
 * A throwaway PKI made with the machine's openssl (node:crypto cannot issue certificates): a CA,
 * a server certificate for 127.0.0.1, client certificates signed by the CA, and self-signed ones.
 * Files live in a temp directory removed after the test.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface Pem {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** RFC 8705 §3.1: base64url SHA-256 of the DER certificate. */
  thumbprint: string;
}

export interface Pki {
  dir: string;
  ca: Pem;
  server: Pem;
  /** A client certificate signed by the CA, with this subject (openssl -subj syntax). */
  issueClient(name: string, subject: string): Pem;
  /** A self-signed client certificate. */
  selfSigned(name: string, subject: string): Pem;
  /**
   * A WebAuthn attestation certificate signed by the CA (WebAuthn L3 §8.2.1: OU "Authenticator
   * Attestation", not a CA, the model's AAGUID in extension 1.3.6.1.4.1.45724.1.1.4).
   */
  issueAttestation(name: string, aaguid: string): Pem;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function load(dir: string, name: string): Pem {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const cert = readFileSync(certFile, 'utf8');
  return {
    certFile,
    keyFile,
    cert,
    key: readFileSync(keyFile, 'utf8'),
    thumbprint: createHash('sha256').update(new X509Certificate(cert).raw).digest('base64url'),
  };
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];

export function makePki(t?: Pick<TestContext, 'after'>): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-pki-'));
  t?.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => join(dir, name);
  openssl(['req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=Clearance Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const issue = (name: string, subject: string, extensions: string) => {
    writeFileSync(at(`${name}.ext`), extensions);
    openssl(['req', '-new', ...ec, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', subject]);
    openssl(['x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-CAcreateserial',
      '-out', at(`${name}.crt`), '-days', '2', '-extfile', at(`${name}.ext`)]);
    return load(dir, name);
  };
  return {
    dir,
    ca: load(dir, 'ca'),
    server: issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'),
    issueClient: (name, subject) => issue(name, subject, 'extendedKeyUsage=clientAuth\n'),
    issueAttestation: (name, aaguid) =>
      issue(name, `/C=SE/O=Clearance Test Authenticators/OU=Authenticator Attestation/CN=${name}`,
        `basicConstraints=critical,CA:FALSE\n1.3.6.1.4.1.45724.1.1.4=DER:04:10:${aaguid.replace(/-/g, '').match(/../g)!.join(':')}\n`),
    selfSigned(name, subject) {
      openssl(['req', '-x509', ...ec, '-keyout', at(`${name}.key`), '-out', at(`${name}.crt`), '-days', '2', '-subj', subject]);
      return load(dir, name);
    },
  };
}
