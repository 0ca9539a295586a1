/**
 * The audit log never holds secrets or raw tokens (DESIGN §5). Every event passes this guard
 * before it is written; test/audit/guard.test.ts holds the cases it must refuse.
 */
import { BoundedMap } from '../jose/bounded-map.ts';

export class AuditGuardError extends Error {
  override name = 'AuditGuardError';
}

/** Largest canonical event accepted, in bytes: events are facts, not payloads. */
export const maxEventBytes = 16 * 1024;

// Field names are compared lowercased with everything but letters and digits removed.
const secretFragments = ['secret', 'password', 'passwd', 'passphrase', 'privatekey', 'masterkey', 'apikey', 'assertion', 'verifier', 'cookie'];
const secretSuffixes = ['token', 'jwt', 'seed'];
const secretNames = new Set(['code', 'otp', 'totp', 'pin', 'authorization', 'bearer', 'dpop', 'sealed', 'usercode', 'devicecode', 'authcode', 'credentials']);

/** What a member name says of its member: named like a credential, or itself a token or key. */
interface NameVerdict {
  secret: boolean;
  problem: ((path: string) => string) | undefined;
}

const nameVerdicts = new Map<string, NameVerdict>();

/** A member name's verdict, remembered: names come from code and repeat in every event. */
function verdictOn(name: string): NameVerdict {
  let verdict = nameVerdicts.get(name);
  if (verdict === undefined) {
    const n = name.toLowerCase().replace(/[^a-z0-9]/g, '');
    verdict = {
      secret: secretNames.has(n) || secretFragments.some((f) => n.includes(f)) || secretSuffixes.some((s) => n.endsWith(s)),
      problem: stringProblem(name),
    };
    // Field names come from code, so the set is small; the bound only guards against misuse.
    if (nameVerdicts.size < 10_000) nameVerdicts.set(name, verdict);
  }
  return verdict;
}

/** True when a field name says it holds a credential (client_secret, refresh_token, code_verifier, ...). */
export function isSecretName(name: string): boolean {
  return verdictOn(name).secret;
}

// Three or more dot-separated base64url segments: a JWS (RFC 7515 §7.1) or JWE (RFC 7516 §7.1)
// compact serialization. The first segment is checked to decode to a JSON header.
const compactCandidate = /[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g;

/**
 * The first base64url characters of a segment that decodes to `{` or to whitespace (as trimStart
 * reads latin1: tab, LF, VT, FF, CR, space, no-break space), the only bytes a JSON header can
 * start with here: the character is the byte's top six bits. Any other segment is not decoded.
 */
const opensJson = new Set(['C', 'D', 'I', 'e', 'o']);

/**
 * Verdicts on strings with two dots, remembered: the same URLs and host names are in every event,
 * and scanning one costs about a microsecond. A pure function of the string; bounded, and only
 * for short strings.
 */
const verdicts = new BoundedMap<string, boolean>(4096);
const longestRemembered = 512;

/** True when `value` contains something shaped like a JWT (JWS or JWE compact serialization). */
export function containsJwt(value: string): boolean {
  const dot = value.indexOf('.');
  if (dot < 0 || value.indexOf('.', dot + 1) < 0) return false;
  if (value.length > longestRemembered) return scanForJwt(value);
  let verdict = verdicts.get(value);
  if (verdict === undefined) {
    verdict = scanForJwt(value);
    verdicts.set(value, verdict);
  }
  return verdict;
}

function scanForJwt(value: string): boolean {
  if (value.includes('eyJ') && /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\./.test(value)) return true;
  for (const match of value.matchAll(compactCandidate)) {
    if (!opensJson.has(match[0][0]!)) continue;
    const header = match[0].slice(0, match[0].indexOf('.'));
    const decoded = Buffer.from(header, 'base64url').toString('latin1').trimStart();
    if (decoded.startsWith('{') && /"(alg|enc|typ)"\s*:/.test(decoded)) return true;
  }
  return false;
}

const pemPrivateKey = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * Throws AuditGuardError naming the first field that holds a secret or a raw token: a field
 * named like a credential (at any depth), a JWT-shaped string, or a PEM private key.
 */
export function assertNoSecrets(value: unknown, path = 'event'): void {
  const found = findSecret(value);
  if (found) throw new AuditGuardError(found.problem(pathOf(path, found.steps)));
}

/** One step from a value to what it holds: an array index, a member, or a member's name itself. */
type Step = number | string | { name: string };

interface Finding {
  /** From the secret up to the value checked (built on the way back, so nothing is built for a clean event). */
  steps: Step[];
  problem: (path: string) => string;
}

function findSecret(value: unknown): Finding | undefined {
  if (typeof value === 'string') {
    const problem = stringProblem(value);
    return problem && { steps: [], problem };
  }
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findSecret(value[i]);
      if (found) return found.steps.push(i), found;
    }
    return undefined;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const member = record[key];
    const verdict = verdictOn(key);
    if (member !== undefined && verdict.secret) {
      return { steps: [key], problem: (path) => `${path} is named like a secret; audit events never carry secrets or raw tokens` };
    }
    if (verdict.problem) return { steps: [{ name: key }], problem: verdict.problem };
    const found = findSecret(member);
    if (found) return found.steps.push(key), found;
  }
  return undefined;
}

function stringProblem(value: string): ((path: string) => string) | undefined {
  if (containsJwt(value)) return (path) => `${path} holds a JWT-shaped string; record its jti or a digest instead`;
  if (pemPrivateKey.test(value)) return (path) => `${path} holds a private key`;
  // A reference access token's handle (src/tokens/reference-tokens.ts) is a bearer credential too.
  if (value.includes('clr_at_')) return (path) => `${path} holds a reference token; record its jti instead`;
  return undefined;
}

/** `event.details.nested[0]`, `event.details key "…"`: the steps read from the root down. */
function pathOf(root: string, steps: Step[]): string {
  let path = root;
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i]!;
    path += typeof step === 'number' ? `[${step}]` : typeof step === 'string' ? `.${step}` : ` key "${step.name}"`;
  }
  return path;
}
