/**
 * A local RFC 3161 time-stamp authority for the agent demo and the tests: `openssl ts -reply` behind
 * a loopback HTTP server (application/timestamp-query in, application/timestamp-reply out), with
 * its own CA and a TSA certificate whose only, critical EKU is timeStamping — an authority nobody
 * here wrote, the independent counterpart of src/pki/tsa.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LocalTsa {
  url: string;
  dir: string;
  /** The TSA's CA certificate (what a verifier trusts) and the TSA certificate, PEM. */
  caPem: string;
  tsaPem: string;
  ca: X509Certificate;
  requests: number;
}

/** `t.after` (a test's, or the demo's list of things to close) receives its cleanup. */
export async function startLocalTsa(t: { after(cleanup: () => unknown): void }): Promise<LocalTsa> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-tsa-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];
  openssl(['req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=Test TSA Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(['req', '-new', ...ec, '-keyout', at('tsa.key'), '-out', at('tsa.csr'), '-subj', '/CN=Test TSA']);
  writeFileSync(at('tsa.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n');
  openssl(['x509', '-req', '-in', at('tsa.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('tsa.pem'), '-days', '2', '-extfile', at('tsa.ext')]);
  writeFileSync(at('serial'), '01\n');
  writeFileSync(
    at('tsa.cnf'),
    [
      '[ tsa ]',
      'default_tsa = tsa_config',
      '[ tsa_config ]',
      `dir = ${dir}`,
      'serial = $dir/serial',
      'crypto_device = builtin',
      'signer_cert = $dir/tsa.pem',
      'certs = $dir/ca.pem',
      'signer_key = $dir/tsa.key',
      'signer_digest = sha256',
      'default_policy = 1.3.6.1.4.1.59999.9.1',
      'digests = sha256, sha384, sha512',
      'accuracy = secs:1',
      'ordering = no',
      'tsa_name = no',
      'ess_cert_id_chain = no',
      'ess_cert_id_alg = sha256',
      '',
    ].join('\n'),
  );
  const tsa: LocalTsa = { url: '', dir, caPem: readFileSync(at('ca.pem'), 'utf8'), tsaPem: readFileSync(at('tsa.pem'), 'utf8'), ca: new X509Certificate(readFileSync(at('ca.pem'))), requests: 0 };
  let counter = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      tsa.requests++;
      const n = ++counter;
      writeFileSync(at(`q${n}.tsq`), Buffer.concat(chunks));
      execFile('openssl', ['ts', '-reply', '-config', at('tsa.cnf'), '-queryfile', at(`q${n}.tsq`), '-out', at(`r${n}.tsr`)], (error) => {
        if (error) {
          response.writeHead(500).end();
          return;
        }
        response.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(readFileSync(at(`r${n}.tsr`)));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  tsa.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/tsa`;
  return tsa;
}
