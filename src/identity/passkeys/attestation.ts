import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from '../../apply/parse.ts';

/**
 * The operator's attestation policy for passkeys (docs/authentication.md "Attestation"), read from
 * the file CLEARANCE_PASSKEY_ATTESTATION names (docs/configuration.md). Without it, Clearance asks
 * for no attestation (`none`): a passkey is phishing-resistant (`urn:clearance:acr:phr`) whatever
 * its make. With it:
 *
 *   roots:                    # attestation trust anchors: PEM files (relative to this file) or PEM text
 *     - yubico-fido-root.pem
 *   roles:
 *     approver:               # a person holding this role registers only attested hardware…
 *       aaguids:              # …of these models (AAGUIDs, lowercase or not)
 *         - ee882879-721c-4913-9775-3dfcce97072a
 *
 * A person holding a listed role is asked for direct attestation at registration, and a passkey is
 * refused unless its attestation chains to one of `roots`, its AAGUID is on every such role's list,
 * and it is device-bound (not backup eligible). A passkey whose attestation chained to a root and
 * whose AAGUID is on any role's list signs in at `urn:clearance:acr:phrh`.
 *
 * A file, not an apply section: the roots are trust anchors of the deployment, like
 * CLEARANCE_TLS_CLIENT_CA, read and checked once at start on every node, and nothing is fetched
 * over the network (no FIDO Metadata Service, no CRLs: revocation is the operator's, by removing a
 * root or an AAGUID from the file and restarting).
 */
export interface PasskeyAttestationPolicy {
  /** The file it was read from (for messages). */
  file: string;
  /** Trust anchors, PEM, each one certificate. */
  roots: string[];
  /** Role → the AAGUIDs (lowercase, hyphenated) its people may register. */
  roles: Record<string, string[]>;
}

/** Attestation formats whose statement carries an x5c chain Clearance can check against its roots. */
export const chainedFormats: ReadonlySet<string> = new Set(['packed', 'fido-u2f', 'tpm', 'apple']);

/**
 * Formats accepted at registration at all. `android-key` and `android-safetynet` are refused: the
 * library checks their chains against roots of its own (and may fetch CRLs named in the
 * certificates: a request the client would choose), which this policy forbids.
 */
export const acceptedFormats: ReadonlySet<string> = new Set(['none', ...chainedFormats]);

const rolePattern = /^[a-z][a-z0-9_-]{0,63}$/;
const aaguidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const zeroAaguid = '00000000-0000-0000-0000-000000000000';
const pemBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads and checks the policy file; throws an Error naming the file and the member at fault. */
export function readAttestationPolicy(file: string, now: Date = new Date()): PasskeyAttestationPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${file} cannot be read: ${(error as Error).message}`);
  }
  const parsed = parseDocument(text, file);
  if (parsed.problems.length > 0) throw new Error(parsed.problems.map((p) => p.message).join('; '));
  return parseAttestationPolicy(parsed.value, { file, dir: dirname(file), now });
}

/** Checks a parsed policy document; `dir` resolves root file names. */
export function parseAttestationPolicy(value: unknown, where: { file: string; dir: string; now: Date }): PasskeyAttestationPolicy {
  const fail = (path: string, message: string): never => {
    throw new Error(`${where.file}: ${path}: ${message}`);
  };
  if (!isObject(value)) return fail('(top)', 'must be an object with roots and roles');
  for (const key of Object.keys(value)) if (key !== 'roots' && key !== 'roles') fail(key, 'unknown member (roots, roles)');
  if (!Array.isArray(value.roots) || value.roots.length === 0) return fail('roots', 'must list at least one root certificate');
  const roots: string[] = [];
  value.roots.forEach((entry, i) => {
    if (typeof entry !== 'string' || entry.trim() === '') return fail(`roots[${i}]`, 'must be a PEM file name or PEM text');
    let text = entry;
    if (!entry.includes('-----BEGIN')) {
      try {
        text = readFileSync(resolve(where.dir, entry), 'utf8');
      } catch (error) {
        return fail(`roots[${i}]`, `cannot read ${entry}: ${(error as Error).message}`);
      }
    }
    const blocks = text.match(pemBlock) ?? [];
    if (blocks.length === 0) fail(`roots[${i}]`, 'holds no PEM certificate');
    for (const block of blocks) {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(block);
      } catch (error) {
        return fail(`roots[${i}]`, `is not a certificate: ${(error as Error).message}`);
      }
      if (!cert.ca) fail(`roots[${i}]`, `${cert.subject.replace(/\n/g, ', ')} is not a CA certificate`);
      if (new Date(cert.validTo) < where.now) fail(`roots[${i}]`, `${cert.subject.replace(/\n/g, ', ')} expired on ${cert.validTo}`);
      roots.push(cert.toString());
    }
  });
  if (!isObject(value.roles) || Object.keys(value.roles).length === 0) return fail('roles', 'must name at least one role');
  const roles: Record<string, string[]> = {};
  for (const [role, rule] of Object.entries(value.roles)) {
    if (!rolePattern.test(role)) fail(`roles.${role}`, 'must be a lowercase role name such as approver');
    if (!isObject(rule)) return fail(`roles.${role}`, 'must be an object with aaguids');
    for (const key of Object.keys(rule)) if (key !== 'aaguids') fail(`roles.${role}.${key}`, 'unknown member (aaguids)');
    if (!Array.isArray(rule.aaguids) || rule.aaguids.length === 0) return fail(`roles.${role}.aaguids`, 'must list at least one AAGUID');
    roles[role] = rule.aaguids.map((aaguid, i) => {
      const normalized = typeof aaguid === 'string' ? aaguid.toLowerCase() : '';
      if (!aaguidPattern.test(normalized) || normalized === zeroAaguid) fail(`roles.${role}.aaguids[${i}]`, 'must be an AAGUID such as ee882879-721c-4913-9775-3dfcce97072a (not all zeros)');
      return normalized;
    });
  }
  return { file: where.file, roots, roles };
}

/** The roles of `roles` for which the policy requires attested hardware. */
export function rolesRequiringAttestation(policy: PasskeyAttestationPolicy | undefined, roles: readonly string[]): string[] {
  if (!policy) return [];
  return roles.filter((role) => Object.hasOwn(policy.roles, role));
}

/** Whether `aaguid` is on any role's list: the models whose attested passkeys sign in at `:phrh`. */
export function isAllowlistedHardware(policy: PasskeyAttestationPolicy | undefined, aaguid: string): boolean {
  if (!policy) return false;
  return Object.values(policy.roles).some((list) => list.includes(aaguid));
}

/**
 * Whether an attestation certificate chain (`x5c`: the attestation certificate first, then
 * intermediates, DER) leads to one of `roots`: each certificate within its validity period at
 * `now`, issued by and signed with the key of the next one up (an intermediate must be a CA).
 * The statement's signature by the first certificate is the library's check, made before this.
 */
export function chainsToRoot(x5c: readonly Uint8Array[], roots: readonly string[], now: Date): boolean {
  if (x5c.length === 0 || x5c.length > 8 || roots.length === 0) return false;
  let chain: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    chain = x5c.map((der) => new X509Certificate(der));
    anchors = roots.map((pem) => new X509Certificate(pem));
  } catch {
    return false;
  }
  const valid = (cert: X509Certificate) => new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
  const issues = (issuer: X509Certificate, cert: X509Certificate) => cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  let current = chain[0]!;
  const unused = chain.slice(1);
  // Each step uses up one intermediate, so the walk ends.
  for (;;) {
    if (!valid(current)) return false;
    if (anchors.some((root) => valid(root) && issues(root, current))) return true;
    const next = unused.findIndex((candidate) => candidate.ca && issues(candidate, current));
    if (next < 0) return false;
    current = unused.splice(next, 1)[0]!;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
