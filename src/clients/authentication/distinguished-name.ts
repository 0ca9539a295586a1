/**
 * Distinguished names for tls_client_auth (RFC 8705 §2.1.2: the registered subject DN is an
 * RFC 4514 string). Both sides are parsed into RDNs of (attribute type, value) pairs and compared
 * structurally, so spelling differences that RFC 4514 allows do not matter and ones it does not
 * allow cannot sneak through:
 *
 * - attribute types match case-insensitively and by OID (`CN`, `cn`, `commonName`, `2.5.4.3`);
 * - RDN order matters (a DN is a path), the order of values inside a multi-valued RDN does not;
 * - values are compared exactly after escapes are decoded (`\,`, `\+`, `\"`, `\\`, `\XX` hex
 *   bytes, UTF-8): no case folding and no whitespace folding, so a differently spelt name is a
 *   different name. Unescaped spaces around separators are ignored;
 * - `#hex` (BER-encoded) values are not supported and never match.
 */

/** One attribute type and value; `type` is canonical (an OID when the name is known). */
export interface AttributeValue {
  type: string;
  value: string;
}
/** A relative distinguished name: one or more attribute values. */
export type Rdn = AttributeValue[];

export class DistinguishedNameError extends Error {
  override name = 'DistinguishedNameError';
}

/** Attribute type names (lowercase) → OID; OpenSSL's short and long names and RFC 4514's. */
const oidByName: Record<string, string> = {
  cn: '2.5.4.3', commonname: '2.5.4.3',
  sn: '2.5.4.4', surname: '2.5.4.4',
  serialnumber: '2.5.4.5',
  c: '2.5.4.6', countryname: '2.5.4.6',
  l: '2.5.4.7', localityname: '2.5.4.7',
  st: '2.5.4.8', s: '2.5.4.8', stateorprovincename: '2.5.4.8',
  street: '2.5.4.9', streetaddress: '2.5.4.9',
  o: '2.5.4.10', organizationname: '2.5.4.10',
  ou: '2.5.4.11', organizationalunitname: '2.5.4.11',
  title: '2.5.4.12',
  description: '2.5.4.13',
  businesscategory: '2.5.4.15',
  postalcode: '2.5.4.17',
  name: '2.5.4.41',
  gn: '2.5.4.42', givenname: '2.5.4.42',
  initials: '2.5.4.43',
  generationqualifier: '2.5.4.44',
  dnqualifier: '2.5.4.46',
  pseudonym: '2.5.4.65',
  organizationidentifier: '2.5.4.97',
  dc: '0.9.2342.19200300.100.1.25', domaincomponent: '0.9.2342.19200300.100.1.25',
  uid: '0.9.2342.19200300.100.1.1', userid: '0.9.2342.19200300.100.1.1',
  e: '1.2.840.113549.1.9.1', email: '1.2.840.113549.1.9.1', emailaddress: '1.2.840.113549.1.9.1',
  jurisdictionl: '1.3.6.1.4.1.311.60.2.1.1', jurisdictionlocalityname: '1.3.6.1.4.1.311.60.2.1.1',
  jurisdictionst: '1.3.6.1.4.1.311.60.2.1.2', jurisdictionstateorprovincename: '1.3.6.1.4.1.311.60.2.1.2',
  jurisdictionc: '1.3.6.1.4.1.311.60.2.1.3', jurisdictioncountryname: '1.3.6.1.4.1.311.60.2.1.3',
};

/** Names used when writing a DN back out (for log details). */
const shortNameByOid: Record<string, string> = {
  '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.9': 'STREET', '2.5.4.10': 'O',
  '2.5.4.11': 'OU', '0.9.2342.19200300.100.1.25': 'DC', '0.9.2342.19200300.100.1.1': 'UID',
  '2.5.4.5': 'serialNumber', '2.5.4.97': 'organizationIdentifier', '1.2.840.113549.1.9.1': 'emailAddress',
};

const numericOid = /^\d+(\.\d+)+$/;
const descriptor = /^[A-Za-z][A-Za-z0-9-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** RFC 4514 §2.4: characters that may follow a backslash as themselves. */
const escapable = new Set([' ', '"', '#', '+', ',', ';', '<', '=', '>', '\\']);

/** Canonical attribute type: an OID for known names and numeric OIDs, else the uppercased name. */
export function canonicalAttributeType(raw: string): string {
  const type = raw.trim();
  const bare = /^oid\./i.test(type) ? type.slice(4) : type;
  if (numericOid.test(bare)) return bare;
  if (!descriptor.test(type)) throw new DistinguishedNameError(`attribute type ${JSON.stringify(type)} is not a name or an OID`);
  return oidByName[type.toLowerCase()] ?? type.toUpperCase();
}

/**
 * Parses an RFC 4514 string (`CN=svc,O=Acme\, Inc.,C=DE`) into RDNs, in the string's order
 * (most specific first).
 */
export function parseRfc4514(text: string): Rdn[] {
  const rdns: Rdn[] = [];
  let current: Rdn = [];
  let i = 0;
  if (text.trim() === '') throw new DistinguishedNameError('the DN is empty');
  while (i <= text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new DistinguishedNameError(`no "=" after position ${i}`);
    const type = canonicalAttributeType(text.slice(i, eq));
    const { value, end } = readValue(text, eq + 1);
    current.push({ type, value });
    const separator = text[end];
    if (separator === '+') {
      i = end + 1;
      continue;
    }
    rdns.push(current);
    current = [];
    if (separator === undefined) break;
    if (separator !== ',') throw new DistinguishedNameError(`unexpected ${JSON.stringify(separator)} at position ${end}`);
    i = end + 1;
  }
  return rdns;
}

/**
 * Parses Node's `X509Certificate.subject`: one RDN per line in certificate order (most
 * significant first), multi-valued RDNs joined by " + ", values escaped as RFC 2253 with control
 * characters as `\XX` (OpenSSL's XN_FLAG_SEP_MULTILINE with ASN1_STRFLGS_ESC_2253 | ESC_CTRL).
 * Returns the RDNs in RFC 4514 order (reversed), ready to compare with `parseRfc4514`.
 */
export function parseNodeSubject(subject: string): Rdn[] {
  if (subject === '') return [];
  return subject
    .split('\n')
    .map((line) => {
      const rdns = parseRfc4514(line);
      // An unescaped comma cannot appear in OpenSSL's escaped output; if it did, refuse.
      if (rdns.length !== 1) throw new DistinguishedNameError('a subject line holds more than one RDN');
      return rdns[0]!;
    })
    .reverse();
}

/** Reads one value from `start` up to an unescaped ',' or '+' (or the end); trims unescaped spaces. */
function readValue(text: string, start: number): { value: string; end: number } {
  let i = start;
  while (text[i] === ' ') i++;
  if (text[i] === '#') throw new DistinguishedNameError('hex-encoded (#) attribute values are not supported');
  const bytes: number[] = [];
  /** Byte length up to and including the last escaped or non-space character. */
  let significant = 0;
  const pushText = (s: string) => bytes.push(...Buffer.from(s, 'utf8'));
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === ',' || ch === '+') break;
    if (ch === ';') throw new DistinguishedNameError('";" is not a separator in RFC 4514; escape it as "\\;"');
    if (ch === '\\') {
      const next = text[i + 1];
      const hex = text.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 3;
      } else if (next !== undefined && escapable.has(next)) {
        pushText(next);
        i += 2;
      } else {
        throw new DistinguishedNameError(`bad escape at position ${i}`);
      }
      significant = bytes.length;
      continue;
    }
    const codePoint = String.fromCodePoint(text.codePointAt(i)!);
    pushText(codePoint);
    if (ch !== ' ') significant = bytes.length;
    i += codePoint.length;
  }
  let value: string;
  try {
    value = utf8.decode(Uint8Array.from(bytes.slice(0, significant)));
  } catch {
    throw new DistinguishedNameError('an attribute value is not UTF-8');
  }
  return { value, end: i };
}

/** True when two parsed DNs name the same entity under the rules above. */
export function distinguishedNamesEqual(a: Rdn[], b: Rdn[]): boolean {
  return formatDn(a) === formatDn(b);
}

/**
 * Writes RDNs as a canonical RFC 4514 string: known types by short name, others as OIDs, the
 * values of a multi-valued RDN sorted, and the characters RFC 4514 §2.4 requires escaped.
 */
export function formatDn(rdns: Rdn[]): string {
  return rdns
    .map((rdn) =>
      rdn
        .map(({ type, value }) => `${shortNameByOid[type] ?? type}=${escapeValue(value)}`)
        .sort()
        .join('+'),
    )
    .join(',');
}

function escapeValue(value: string): string {
  return value
    .replace(/[\\"+,;<>=]/g, (c) => `\\${c}`)
    .replace(/[\u0000-\u001f\u007f]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/^[ #]/, (c) => `\\${c}`)
    .replace(/ $/, '\\ ');
}
