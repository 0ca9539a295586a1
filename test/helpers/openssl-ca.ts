import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Lays out the directory `openssl ca` works in — `certs/`, `index.txt`, `serial` (from
 * `firstSerial`), `crlnumber` and `ca.cnf` — for a test CA of ours (test/helpers/partner-pki.ts,
 * person-pki.ts). SHA-256, CRLs valid an hour, no extensions copied from requests, any subject
 * (only `commonName` required; `moreFields` for the DN fields a CA's certificates may carry).
 */
export function opensslCaDir(home: string, firstSerial: string, moreFields: readonly string[] = []): string {
  mkdirSync(join(home, 'certs'), { recursive: true });
  writeFileSync(join(home, 'index.txt'), '');
  writeFileSync(join(home, 'serial'), `${firstSerial}\n`);
  writeFileSync(join(home, 'crlnumber'), '01\n');
  const optional = ['countryName', 'organizationName', 'organizationalUnitName', ...moreFields].map((field) => `${field} = optional`).join('\n');
  writeFileSync(
    join(home, 'ca.cnf'),
    `[ ca ]
default_ca = this_ca
[ this_ca ]
dir = ${home}
database = $dir/index.txt
new_certs_dir = $dir/certs
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_crl_hours = 1
policy = subjects
unique_subject = no
copy_extensions = none
[ subjects ]
${optional}
commonName = supplied
`,
  );
  return home;
}
