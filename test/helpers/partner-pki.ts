/**
 * A partner firm's CA for its mTLS clients, made with the machine's openssl (`openssl ca`, its
 * index for revocation): a root, optionally an issuing CA under it, client certificates with the
 * subject asked, revocation, and the issuing CA's CRL and OCSP responder (`openssl ocsp`) served
 * over HTTP on loopback, which can be made to fail. Files live in a temp directory removed after
 * the test. With an issuing CA, the root answers for it too (its own CRL and OCSP responder, named
 * in the issuing CA's certificate), so revoking the issuing CA is seen by a path check.
 * (test/helpers/person-pki.ts is the same for people's smart cards, with one level.)
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { opensslCaDir } from './openssl-ca.ts';

export interface PartnerCertificate {
  certFile: string;
  keyFile: string;
  /** The certificate, PEM. */
  cert: string;
  /** The certificate followed by the issuing CA (when there is one): what a client sends in the handshake. */
  chain: string;
  key: string;
  /** RFC 9440 §2.2 `:base64 DER:`, what a TLS-terminating proxy passes (the leaf only). */
  header: string;
  /** RFC 8705 §3.1 x5t#S256. */
  thumbprint: string;
}

export interface PartnerPki {
  dir: string;
  /** The root CA certificate, PEM, and its file. */
  rootPem: string;
  rootFile: string;
  /** The issuing CA under the root, PEM, when made with `intermediate: true`. */
  intermediatePem?: string;
  /** The root's SHA-256 thumbprint as `openssl x509 -fingerprint -sha256` prints it (AB:CD:…). */
  rootFingerprint: string;
  issue(name: string, options?: { subject?: string }): PartnerCertificate;
  revoke(certificate: PartnerCertificate): void;
  /** The issuing CA's CRL distribution point, as its certificates name it. */
  crlUrl: string;
  /** Revokes the issuing CA's certificate at the root (made with `intermediate: true`). */
  revokeIssuingCa(): void;
  /**
   * Extensions of the issuing CA's CRLs from now on, as an openssl config section's lines (further
   * sections may follow), e.g. `issuingDistributionPoint = critical,@idp` and `[ idp ]` `onlyCA = TRUE`.
   */
  crlExtensions?: string;
  /** While true, the CRL and OCSP URLs answer 503. */
  down: boolean;
  /** What the issuing CA's CRL and OCSP URLs served; `rootCrl` and `rootOcsp`: the root's, about the issuing CA. */
  served: { crl: number; ocsp: number; rootCrl: number; rootOcsp: number };
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** An openssl `ca` date: YYYYMMDDHHMMSSZ. */
function caDate(hours: number): string {
  return `${new Date(Date.now() + hours * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** An `openssl ca` directory: its config, index, serial. */
function caDir(dir: string, name: string): string {
  return opensslCaDir(join(dir, name), name === 'root' ? '1000' : '2000');
}

export async function makePartnerPki(t: Pick<TestContext, 'after'>, options: { name: string; intermediate?: boolean }): Promise<PartnerPki> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-partner-pki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The responders first: the certificates name their URLs.
  let pki: PartnerPki | undefined;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (!pki || pki.down) return void response.writeHead(503).end();
      const routes: Record<string, [keyof PartnerPki['served'], string, () => Buffer]> = {
        'GET /crl': ['crl', 'application/pkix-crl', () => crl(issuing, pki!.crlExtensions)],
        'POST /ocsp': ['ocsp', 'application/ocsp-response', () => ocsp(issuing, Buffer.concat(chunks))],
        'GET /root/crl': ['rootCrl', 'application/pkix-crl', () => crl(root)],
        'POST /root/ocsp': ['rootOcsp', 'application/ocsp-response', () => ocsp(root, Buffer.concat(chunks))],
      };
      const route = routes[`${request.method} ${request.url}`];
      if (!route) return void response.writeHead(404).end();
      const [counter, type, body] = route;
      pki.served[counter]++;
      response.writeHead(200, { 'content-type': type }).end(body());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const crlUrl = `${base}/crl`;
  const ocspUrl = `${base}/ocsp`;

  const root = caDir(dir, 'root');
  const caExt = join(dir, 'ca.ext');
  writeFileSync(caExt, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  openssl(['req', '-new', ...ec, '-keyout', join(root, 'ca.key'), '-out', join(root, 'ca.csr'), '-subj', `/O=${options.name}/CN=${options.name} Root CA`]);
  // Self-signed by `openssl ca`, to date it from a day back.
  openssl(['ca', '-batch', '-selfsign', '-config', join(root, 'ca.cnf'), '-keyfile', join(root, 'ca.key'), '-in', join(root, 'ca.csr'), '-out', join(root, 'ca.crt'), '-extfile', caExt, '-startdate', caDate(-24), '-enddate', caDate(30 * 24), '-notext']);
  let issuing = root;
  if (options.intermediate) {
    issuing = caDir(dir, 'issuing');
    const intExt = join(dir, 'issuing.ext');
    writeFileSync(
      intExt,
      'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' +
        `authorityInfoAccess=OCSP;URI:${base}/root/ocsp\ncrlDistributionPoints=URI:${base}/root/crl\n`,
    );
    openssl(['req', '-new', ...ec, '-keyout', join(issuing, 'ca.key'), '-out', join(issuing, 'ca.csr'), '-subj', `/O=${options.name}/CN=${options.name} Issuing CA`]);
    openssl(['ca', '-batch', '-config', join(root, 'ca.cnf'), '-in', join(issuing, 'ca.csr'), '-out', join(issuing, 'ca.crt'), '-extfile', intExt, '-startdate', caDate(-24), '-enddate', caDate(20 * 24), '-notext']);
  }
  const rootPem = readFileSync(join(root, 'ca.crt'), 'utf8');
  const intermediatePem = options.intermediate ? readFileSync(join(issuing, 'ca.crt'), 'utf8') : undefined;

  pki = {
    dir,
    rootPem,
    rootFile: join(root, 'ca.crt'),
    ...(intermediatePem ? { intermediatePem } : {}),
    rootFingerprint: createHash('sha256').update(new X509Certificate(rootPem).raw).digest('hex').toUpperCase().match(/../g)!.join(':'),
    crlUrl,
    down: false,
    served: { crl: 0, ocsp: 0, rootCrl: 0, rootOcsp: 0 },
    issue(name, o = {}) {
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=clientAuth',
        'authorityKeyIdentifier=keyid',
        `authorityInfoAccess=OCSP;URI:${ocspUrl}`,
        `crlDistributionPoints=URI:${crlUrl}`,
      ].join('\n') + '\n');
      const certFile = join(dir, `${name}.crt`);
      const keyFile = join(dir, `${name}.key`);
      openssl(['req', '-new', ...ec, '-keyout', keyFile, '-out', join(dir, `${name}.csr`), '-subj', o.subject ?? `/CN=${name}`]);
      openssl(['ca', '-batch', '-config', join(issuing, 'ca.cnf'), '-in', join(dir, `${name}.csr`), '-out', certFile, '-extfile', ext, '-startdate', caDate(-1), '-enddate', caDate(24), '-notext']);
      const cert = readFileSync(certFile, 'utf8');
      const x509 = new X509Certificate(cert);
      return {
        certFile,
        keyFile,
        cert,
        chain: cert + (intermediatePem ?? ''),
        key: readFileSync(keyFile, 'utf8'),
        header: `:${x509.raw.toString('base64')}:`,
        thumbprint: createHash('sha256').update(x509.raw).digest('base64url'),
      };
    },
    revoke(certificate) {
      openssl(['ca', '-config', join(issuing, 'ca.cnf'), '-revoke', certificate.certFile, '-crl_reason', 'keyCompromise']);
    },
    revokeIssuingCa() {
      if (issuing === root) throw new Error('this PKI has no issuing CA');
      openssl(['ca', '-config', join(root, 'ca.cnf'), '-revoke', join(issuing, 'ca.crt'), '-crl_reason', 'cACompromise']);
    },
  };

  /** The CA's current CRL (DER), with these extensions (an openssl config section's lines). */
  const crl = (ca: string, extensions?: string) => {
    let config = join(ca, 'ca.cnf');
    const exts = extensions ? ['-crlexts', 'crl_test_ext'] : [];
    if (extensions) {
      config = join(ca, 'crl.cnf');
      writeFileSync(config, `${readFileSync(join(ca, 'ca.cnf'), 'utf8')}\n[ crl_test_ext ]\n${extensions}\n`);
    }
    openssl(['ca', '-config', config, '-gencrl', ...exts, '-out', join(ca, 'crl.pem')]);
    openssl(['crl', '-in', join(ca, 'crl.pem'), '-outform', 'DER', '-out', join(ca, 'crl.der')]);
    return readFileSync(join(ca, 'crl.der'));
  };
  /** The CA's own answer (signed with its key) to an OCSP request. */
  const ocsp = (ca: string, request: Buffer) => {
    writeFileSync(join(ca, 'ocsp-request.der'), request);
    openssl(['ocsp', '-index', join(ca, 'index.txt'), '-CA', join(ca, 'ca.crt'), '-rsigner', join(ca, 'ca.crt'), '-rkey', join(ca, 'ca.key'), '-reqin', join(ca, 'ocsp-request.der'), '-respout', join(ca, 'ocsp-response.der'), '-nmin', '5']);
    return readFileSync(join(ca, 'ocsp-response.der'));
  };
  return pki;
}
