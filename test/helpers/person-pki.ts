/**
 * A firm's person CA made with the machine's openssl (`openssl ca`, its index for revocation), as
 * certificate sign-in meets one (docs/certificate-sign-in.md): people's certificates with the
 * names, key usages and policies asked; revocation; the CRL and an OCSP responder (`openssl ocsp`
 * answering each request from the index) served over HTTP on loopback, which can be made to fail.
 * Files live in a temp directory removed after the test.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { opensslCaDir } from './openssl-ca.ts';

/** A made certificate: its files and PEM text, its key, and its header value for a TLS-terminating proxy. */
export interface PersonCertificate {
  name: string;
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** RFC 9440 §2.2 `:base64 DER:`, what the proxy passes in CLEARANCE_CLIENT_CERT_HEADER. */
  header: string;
  serial: string;
  sha256: string;
}

export interface PersonCertificateOptions {
  subject?: string;
  /** openssl subjectAltName syntax, e.g. `email:alice@broker.example.com`. */
  san?: string;
  policies?: string[];
  /** openssl extendedKeyUsage syntax; default clientAuth. */
  eku?: string;
  keyUsage?: string;
  /** Valid from and to, relative to now in hours (default -1 and +24). */
  fromHours?: number;
  toHours?: number;
}

export interface PersonPki {
  dir: string;
  /** The CA certificate, PEM: what `person_certificates.authorities[].certificates` holds. */
  caPem: string;
  /** The CRL distribution point and OCSP responder the certificates name (http on loopback). */
  crlUrl: string;
  ocspUrl: string;
  issue(name: string, options?: PersonCertificateOptions): PersonCertificate;
  revoke(certificate: PersonCertificate): void;
  /** While true, the CRL and OCSP URLs answer 503. */
  down: boolean;
  /** How many requests the CRL URL and the OCSP responder answered. */
  served: { crl: number; ocsp: number };
}

/** The OID the tests' firm's CP assigns to certificates whose key is on a PIN-protected smart card. */
export const hardwarePolicy = '1.3.6.1.4.1.59999.7.1';
/** Its policy for certificates kept in software. */
export const softwarePolicy = '1.3.6.1.4.1.59999.7.2';

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** An openssl `ca` date: YYYYMMDDHHMMSSZ. */
function caDate(hours: number): string {
  return `${new Date(Date.now() + hours * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export async function makePersonPki(t: Pick<TestContext, 'after'>, options: { name?: string } = {}): Promise<PersonPki> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-person-pki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => join(dir, name);
  opensslCaDir(dir, '1000', ['serialNumber', 'emailAddress']);
  // Self-signed by `openssl ca`, to date it from a day back: the tests' clocks start before it is made.
  writeFileSync(at('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  openssl(['req', '-new', ...ec, '-keyout', at('ca.key'), '-out', at('ca.csr'), '-subj', `/O=Broker Ltd/CN=${options.name ?? 'Broker Person CA'}`]);
  openssl(['ca', '-batch', '-selfsign', '-config', at('ca.cnf'), '-keyfile', at('ca.key'), '-in', at('ca.csr'), '-out', at('ca.crt'), '-extfile', at('ca.ext'),
    '-startdate', caDate(-24), '-enddate', caDate(30 * 24), '-notext']);

  const pki: PersonPki = {
    dir,
    caPem: readFileSync(at('ca.crt'), 'utf8'),
    crlUrl: '',
    ocspUrl: '',
    down: false,
    served: { crl: 0, ocsp: 0 },
    issue(name, o = {}) {
      const extensions = [
        'basicConstraints=critical,CA:FALSE',
        `keyUsage=critical,${o.keyUsage ?? 'digitalSignature'}`,
        `extendedKeyUsage=${o.eku ?? 'clientAuth'}`,
        'authorityKeyIdentifier=keyid',
        ...(o.policies?.length ? [`certificatePolicies=${o.policies.join(',')}`] : []),
        ...(o.san ? [`subjectAltName=${o.san}`] : []),
        `authorityInfoAccess=OCSP;URI:${pki.ocspUrl}`,
        `crlDistributionPoints=URI:${pki.crlUrl}`,
      ];
      writeFileSync(at(`${name}.ext`), `${extensions.join('\n')}\n`);
      openssl(['req', '-new', ...ec, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', o.subject ?? `/CN=${name}`]);
      openssl(['ca', '-batch', '-config', at('ca.cnf'), '-in', at(`${name}.csr`), '-out', at(`${name}.crt`), '-extfile', at(`${name}.ext`),
        '-startdate', caDate(o.fromHours ?? -1), '-enddate', caDate(o.toHours ?? 24), '-notext']);
      const cert = readFileSync(at(`${name}.crt`), 'utf8');
      const x509 = new X509Certificate(cert);
      return {
        name,
        certFile: at(`${name}.crt`),
        keyFile: at(`${name}.key`),
        cert,
        key: readFileSync(at(`${name}.key`), 'utf8'),
        header: `:${x509.raw.toString('base64')}:`,
        serial: x509.serialNumber.toLowerCase(),
        sha256: createHash('sha256').update(x509.raw).digest('base64url'),
      };
    },
    revoke(certificate) {
      openssl(['ca', '-config', at('ca.cnf'), '-revoke', certificate.certFile, '-crl_reason', 'keyCompromise']);
    },
  };

  const crl = () => {
    openssl(['ca', '-config', at('ca.cnf'), '-gencrl', '-out', at('crl.pem')]);
    openssl(['crl', '-in', at('crl.pem'), '-outform', 'DER', '-out', at('crl.der')]);
    return readFileSync(at('crl.der'));
  };
  const ocsp = (request: Buffer) => {
    writeFileSync(at('ocsp-request.der'), request);
    openssl(['ocsp', '-index', at('index.txt'), '-CA', at('ca.crt'), '-rsigner', at('ca.crt'), '-rkey', at('ca.key'), '-reqin', at('ocsp-request.der'), '-respout', at('ocsp-response.der'), '-nmin', '5']);
    return readFileSync(at('ocsp-response.der'));
  };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (pki.down) {
        response.writeHead(503).end();
        return;
      }
      if (request.url === '/crl' && request.method === 'GET') {
        pki.served.crl++;
        response.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(crl());
        return;
      }
      if (request.url === '/ocsp' && request.method === 'POST') {
        pki.served.ocsp++;
        response.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(ocsp(Buffer.concat(chunks)));
        return;
      }
      response.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };
  pki.crlUrl = `http://127.0.0.1:${port}/crl`;
  pki.ocspUrl = `http://127.0.0.1:${port}/ocsp`;
  return pki;
}
