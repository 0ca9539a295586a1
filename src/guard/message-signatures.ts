import { createHash, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';

/**
 * HTTP Message Signatures (RFC 9421) for order and settlement requests, and `Content-Digest`
 * (RFC 9530): an agent or service signs the request it sends; the guard verifies it and keeps the
 * evidence (docs/transaction-signing.md). Pure node:crypto, no server module: the guard builds on
 * its own.
 */

/** What a signed request must cover at least: method, target, body digest, token and the trade's txn. */
export const requiredComponents = ['@method', '@target-uri', 'content-digest', 'authorization', 'txn'] as const;

export type SignatureAlgorithm = 'ecdsa-p256-sha256' | 'ed25519';

export type MessageSignatureErrorCode =
  | 'missing'
  | 'malformed'
  | 'unsupported_alg'
  | 'missing_component'
  | 'expired'
  | 'future'
  | 'bad_signature'
  | 'digest_mismatch'
  | 'replayed'
  | 'unknown_key';

export class MessageSignatureError extends Error {
  override name = 'MessageSignatureError';
  readonly code: MessageSignatureErrorCode;
  constructor(code: MessageSignatureErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The parts of an HTTP request a signature can cover. Header names are matched case-insensitively. */
export interface SignableRequest {
  method: string;
  /** The absolute target URI (RFC 9421 §2.2.2). */
  targetUri: string;
  headers: Record<string, string | string[] | undefined>;
}

/** RFC 9530 §2: `sha-256=:<base64 of SHA-256(body)>:`. */
export function contentDigest(body: Uint8Array): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}

/**
 * RFC 9530: the body matches every digest of an algorithm we know (sha-256, sha-512) in the
 * header, and there is at least one; an unknown algorithm alone is a refusal, not a pass.
 */
export function checkContentDigest(header: string | undefined, body: Uint8Array): void {
  if (header === undefined) throw new MessageSignatureError('digest_mismatch', 'the request has no Content-Digest');
  const entries = parseDictionary(header);
  let checked = 0;
  for (const [name, member] of entries) {
    const algorithm = name === 'sha-256' ? 'sha256' : name === 'sha-512' ? 'sha512' : undefined;
    if (!algorithm) continue;
    if (!(member.value instanceof Uint8Array)) throw new MessageSignatureError('malformed', `Content-Digest ${name} is not a byte sequence`);
    const actual = createHash(algorithm).update(body).digest();
    if (actual.length !== member.value.length || !timingSafeEqual(actual, member.value)) throw new MessageSignatureError('digest_mismatch', `the body does not match its Content-Digest (${name})`);
    checked++;
  }
  if (checked === 0) throw new MessageSignatureError('digest_mismatch', 'Content-Digest names no sha-256 or sha-512 digest');
}

export interface SignOptions {
  key: KeyObject;
  keyid: string;
  /** Epoch seconds; default now. */
  created?: number;
  nonce?: string;
  label?: string;
  components?: readonly string[];
}

/**
 * Signs a request (RFC 9421 §3.1): the headers to add, `Signature-Input` and `Signature`. The
 * request must already carry the headers it covers (Content-Digest, Authorization, txn).
 */
export function signRequest(request: SignableRequest, options: SignOptions): { 'signature-input': string; signature: string } {
  const alg = algorithmOf(options.key);
  const components = options.components ?? requiredComponents;
  const params: Params = new Map<string, string | number>([
    ['created', options.created ?? Math.floor(Date.now() / 1000)],
    ['keyid', options.keyid],
    ['alg', alg],
    ...(options.nonce !== undefined ? [['nonce', options.nonce] as [string, string]] : []),
  ]);
  const inner = serializeInnerList(components, params);
  const base = signatureBase(request, components, inner);
  const label = options.label ?? 'sig1';
  const signature = alg === 'ed25519' ? sign(null, Buffer.from(base), options.key) : sign('sha256', Buffer.from(base), { key: options.key, dsaEncoding: 'ieee-p1363' });
  return { 'signature-input': `${label}=${inner}`, signature: `${label}=:${signature.toString('base64')}:` };
}

export interface VerifyOptions {
  /** The signer's public key for a `keyid` (the guard: a certificate of Clearance's CA). */
  resolveKey(keyid: string): Promise<{ publicKey: KeyObject } | undefined>;
  requiredComponents?: readonly string[];
  /** How old `created` may be (default 300 s), and how far ahead of now (60 s). */
  maxAgeSeconds?: number;
  now(): number;
  /**
   * Replay: true when this signature was seen before (the caller remembers it until it is too old
   * anyway). `signature` is in its canonical form (ECDSA: low-S), the same for every encoding of one
   * signature; key on it, never on `label`, which is not signed (a captured request relabelled is
   * the same request).
   */
  seen?(label: string, signature: Buffer, created: number): Promise<boolean>;
  /** The label to verify when several are present; default the only one. */
  label?: string;
}

export interface VerifiedSignature {
  label: string;
  keyid: string;
  alg: SignatureAlgorithm;
  created: number;
  nonce?: string;
  coveredComponents: string[];
  /** The exact bytes that were signed (RFC 9421 §2.5): the evidence keeps them. */
  signatureBase: string;
  signatureInput: string;
  signature: Buffer;
}

/**
 * Verifies a signed request (RFC 9421 §3.2), each rule in order: one signature (or the named
 * label) with its input, both well-formed; the covered components include every required one; the
 * parameters name a key and an algorithm that is appropriate for it (§3.2 step 5); `created` is
 * neither in the future nor too old; the signature verifies over the base rebuilt from this
 * request; it was not seen before. The body's Content-Digest is the caller's to check (it is
 * covered, so it cannot be swapped).
 */
export async function verifyRequest(request: SignableRequest, options: VerifyOptions): Promise<VerifiedSignature> {
  const inputHeader = headerValue(request.headers, 'signature-input');
  const signatureHeader = headerValue(request.headers, 'signature');
  if (inputHeader === undefined || signatureHeader === undefined) throw new MessageSignatureError('missing', 'the request carries no Signature and Signature-Input');
  const inputs = parseDictionary(inputHeader);
  const signatures = parseDictionary(signatureHeader);
  const label = options.label ?? (inputs.size === 1 ? [...inputs.keys()][0]! : undefined);
  if (label === undefined) throw new MessageSignatureError('malformed', 'several signatures and none named');
  const input = inputs.get(label);
  const value = signatures.get(label);
  if (!input || !Array.isArray(input.value)) throw new MessageSignatureError('malformed', `Signature-Input ${label} is not an inner list`);
  if (!value || !(value.value instanceof Uint8Array)) throw new MessageSignatureError('malformed', `Signature ${label} is not a byte sequence`);
  const components = input.value.map((item) => {
    if (typeof item !== 'string') throw new MessageSignatureError('malformed', 'a covered component is not a string');
    return item;
  });
  if (new Set(components).size !== components.length) throw new MessageSignatureError('malformed', 'a component is covered twice');
  for (const required of options.requiredComponents ?? requiredComponents) {
    if (!components.includes(required)) throw new MessageSignatureError('missing_component', `the signature does not cover ${required}`);
  }
  const keyid = input.params.get('keyid');
  const created = input.params.get('created');
  const alg = input.params.get('alg');
  const nonce = input.params.get('nonce');
  if (typeof keyid !== 'string') throw new MessageSignatureError('malformed', 'the signature names no keyid');
  if (typeof created !== 'number') throw new MessageSignatureError('malformed', 'the signature has no created time');
  const now = Math.floor(options.now() / 1000);
  if (created > now + 60) throw new MessageSignatureError('future', 'the signature was created in the future');
  if (now - created > (options.maxAgeSeconds ?? 300)) throw new MessageSignatureError('expired', 'the signature is too old');
  const key = await options.resolveKey(keyid);
  if (!key) throw new MessageSignatureError('unknown_key', `no key ${keyid}`);
  const keyAlg = algorithmOf(key.publicKey);
  // RFC 9421 §3.2 step 5: the algorithm must be the key's, whatever `alg` claims.
  if (alg !== undefined && alg !== keyAlg) throw new MessageSignatureError('unsupported_alg', `alg ${String(alg)} is not the key's (${keyAlg})`);
  const inner = serializeInnerList(components, input.params);
  const base = signatureBase(request, components, inner);
  const signature = Buffer.from(value.value);
  if (!verifySignatureBase(base, signature, key.publicKey)) throw new MessageSignatureError('bad_signature', 'the signature does not verify over this request');
  if (options.seen && (await options.seen(label, canonicalSignature(signature, keyAlg), created))) throw new MessageSignatureError('replayed', 'this signed request was seen before');
  return { label, keyid, alg: keyAlg, created, ...(typeof nonce === 'string' ? { nonce } : {}), coveredComponents: components, signatureBase: base, signatureInput: `${label}=${inner}`, signature };
}

/**
 * A stored signature's parts (the evidence record): its label, covered components and parameters
 * from `Signature-Input`, and the `"@signature-params"` line the base must end with.
 */
function readSignatureInput(text: string): { label: string; components: string[]; params: Map<string, string | number>; paramsLine: string } {
  const members = parseDictionary(text);
  if (members.size !== 1) throw new MessageSignatureError('malformed', 'one signature input expected');
  const [label, member] = [...members][0]!;
  if (!Array.isArray(member.value)) throw new MessageSignatureError('malformed', 'the signature input is not an inner list');
  const components = member.value as string[];
  return { label, components, params: member.params, paramsLine: `"@signature-params": ${serializeInnerList(components, member.params)}` };
}

/**
 * A recorded signature (an evidence record: its `Signature-Input` and signature base) read and held
 * to the request it claims to be of: the five required components covered, a keyid and created
 * time named, the base ending with exactly that input and covering this method, target, txn and
 * content digest. Clearance checks it when a producer reports it, and verify-bundle offline.
 */
export function readRecordedSignature(
  signatureInput: string,
  base: string,
  request: { method: string; targetUri: string; txn: string; contentDigest: string },
): { components: string[]; keyid: string; created: number } {
  const input = readSignatureInput(signatureInput);
  for (const component of requiredComponents) {
    if (!input.components.includes(component)) throw new MessageSignatureError('missing_component', `the signature does not cover ${component}`);
  }
  const keyid = input.params.get('keyid');
  const created = input.params.get('created');
  if (typeof keyid !== 'string' || typeof created !== 'number') throw new MessageSignatureError('malformed', 'the signature input names no keyid or created time');
  const lines = base.split('\n');
  if (lines.at(-1) !== input.paramsLine) throw new MessageSignatureError('malformed', 'the signature base does not end with the signature input');
  const line = (id: string) => lines.find((l) => l.startsWith(`"${id}": `))?.slice(id.length + 4);
  if (line('@method') !== request.method.toUpperCase() || line('@target-uri') !== request.targetUri || line('txn') !== request.txn || line('content-digest') !== request.contentDigest) {
    throw new MessageSignatureError('bad_signature', "the signature base does not cover the request's method, target, txn and content digest");
  }
  return { components: input.components, keyid, created };
}

/** Verifies a stored signature base offline (the evidence bundle): the bytes and the signer's key. */
export function verifySignatureBase(base: string, signature: Uint8Array, publicKey: KeyObject): boolean {
  try {
    return algorithmOf(publicKey) === 'ed25519'
      ? verify(null, Buffer.from(base), publicKey, signature)
      : signature.length === 64 && verify('sha256', Buffer.from(base), { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

/** The order of the P-256 group: an ECDSA signature (r, s) verifies as (r, n - s) too. */
const p256Order = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

/**
 * One spelling of a verified signature, for replay detection: an ECDSA signature with the lower of
 * s and n - s (both verify, and anyone holding one can compute the other, so a replay keyed on the
 * bytes as sent would pass as new). Ed25519 signatures have one valid encoding already.
 */
function canonicalSignature(signature: Buffer, alg: SignatureAlgorithm): Buffer {
  if (alg !== 'ecdsa-p256-sha256') return signature;
  const s = BigInt(`0x${signature.subarray(32).toString('hex')}`);
  if (s <= p256Order >> 1n) return signature;
  return Buffer.concat([signature.subarray(0, 32), Buffer.from((p256Order - s).toString(16).padStart(64, '0'), 'hex')]);
}

/** RFC 9421 §3.3: the algorithm a key signs with, from the key itself. */
export function algorithmOf(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256-sha256';
  throw new MessageSignatureError('unsupported_alg', `a ${key.asymmetricKeyType} key does not sign requests here (ecdsa-p256-sha256, ed25519)`);
}

/** RFC 9421 §2.5: one line per covered component, then `"@signature-params"`. */
export function signatureBase(request: SignableRequest, components: readonly string[], signatureParams: string): string {
  const lines = components.map((id) => `"${id}": ${componentValue(request, id)}`);
  lines.push(`"@signature-params": ${signatureParams}`);
  return lines.join('\n');
}

function componentValue(request: SignableRequest, id: string): string {
  if (id.startsWith('@')) {
    let url: URL;
    try {
      url = new URL(request.targetUri);
    } catch {
      throw new MessageSignatureError('malformed', 'the target URI is not absolute');
    }
    switch (id) {
      case '@method':
        return request.method.toUpperCase();
      case '@target-uri':
        return request.targetUri;
      case '@authority':
        // RFC 9421 §2.2.3: lower-case host, the port only when not the scheme's default.
        return url.host.toLowerCase();
      case '@scheme':
        return url.protocol.slice(0, -1).toLowerCase();
      case '@path':
        return url.pathname;
      case '@query':
        return url.search === '' ? '?' : url.search;
      case '@request-target':
        return `${url.pathname}${url.search}`;
      default:
        throw new MessageSignatureError('malformed', `derived component ${id} is not supported`);
    }
  }
  if (id !== id.toLowerCase() || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(id)) throw new MessageSignatureError('malformed', `component ${id} is not a lower-case field name`);
  const value = headerValue(request.headers, id);
  if (value === undefined) throw new MessageSignatureError('missing_component', `the request has no ${id} field to cover`);
  return value;
}

/** RFC 9421 §2.1: the field's values, each trimmed, joined with ", ". */
function headerValue(headers: SignableRequest['headers'], name: string): string | undefined {
  const found = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
  if (found === undefined) return undefined;
  const values = Array.isArray(found) ? found : [found];
  return values.map((v) => v.trim().replace(/\s*\r?\n\s*/g, ' ')).join(', ');
}

// RFC 8941 structured fields: the subset signatures use — a dictionary whose members are byte
// sequences or inner lists of strings, with parameters that are strings, integers or tokens.

type Params = Map<string, string | number>;
type Bare = string | number | Uint8Array | string[];
interface Member {
  value: Bare;
  params: Params;
}

function serializeInnerList(items: readonly string[], params: Params): string {
  const list = `(${items.map((item) => JSON.stringify(item)).join(' ')})`;
  return list + [...params].map(([key, value]) => `;${key}=${typeof value === 'number' ? value : JSON.stringify(value)}`).join('');
}

function parseDictionary(text: string): Map<string, Member> {
  const out = new Map<string, Member>();
  let i = 0;
  const fail = (message: string): never => {
    throw new MessageSignatureError('malformed', `structured field: ${message}`);
  };
  const skipSpaces = () => {
    while (text[i] === ' ' || text[i] === '\t') i++;
  };
  const key = (): string => {
    const match = /^[a-z*][a-z0-9_\-.*]*/.exec(text.slice(i));
    if (!match) return fail('a key expected');
    i += match[0].length;
    return match[0];
  };
  const string = (): string => {
    if (text[i] !== '"') return fail('a string expected');
    let out = '';
    for (i++; i < text.length; i++) {
      const c = text[i]!;
      if (c === '\\') {
        const next = text[++i];
        if (next !== '"' && next !== '\\') return fail('a bad escape');
        out += next;
      } else if (c === '"') {
        i++;
        return out;
      } else if (c < ' ' || c > '~') {
        return fail('a character outside printable ASCII');
      } else out += c;
    }
    return fail('an unterminated string');
  };
  const bare = (): string | number | Uint8Array => {
    const c = text[i];
    if (c === '"') return string();
    if (c === ':') {
      const end = text.indexOf(':', i + 1);
      if (end < 0) return fail('an unterminated byte sequence');
      const b64 = text.slice(i + 1, end);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return fail('a bad byte sequence');
      i = end + 1;
      return new Uint8Array(Buffer.from(b64, 'base64'));
    }
    const number = /^-?[0-9]{1,15}/.exec(text.slice(i));
    if (number) {
      i += number[0].length;
      if (text[i] === '.') return fail('decimals are not used here');
      return Number(number[0]);
    }
    const token = /^[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*/.exec(text.slice(i));
    if (token) {
      i += token[0].length;
      return token[0];
    }
    return fail('a value expected');
  };
  const params = (): Params => {
    const out: Params = new Map();
    while (text[i] === ';') {
      i++;
      skipSpaces();
      const name = key();
      if (out.has(name)) fail(`parameter ${name} given twice`);
      let value: string | number = 1;
      if (text[i] === '=') {
        i++;
        const v = bare();
        if (v instanceof Uint8Array) fail('a byte sequence parameter is not used here');
        value = v as string | number;
      }
      out.set(name, value);
    }
    return out;
  };
  skipSpaces();
  while (i < text.length) {
    const name = key();
    if (out.has(name)) fail(`member ${name} given twice`);
    let value: Bare;
    if (text[i] !== '=') fail(`member ${name} has no value`);
    i++;
    if (text[i] === '(') {
      i++;
      const items: string[] = [];
      for (;;) {
        while (text[i] === ' ') i++;
        if (text[i] === ')') {
          i++;
          break;
        }
        if (i >= text.length) fail('an unterminated inner list');
        items.push(string());
        if (text[i] === ';') fail('component parameters are not supported');
        if (text[i] !== ' ' && text[i] !== ')') fail('items are separated by a space');
      }
      value = items;
    } else {
      value = bare();
    }
    out.set(name, { value, params: params() });
    skipSpaces();
    if (i >= text.length) break;
    if (text[i] !== ',') fail('members are separated by a comma');
    i++;
    skipSpaces();
    if (i >= text.length) fail('a trailing comma');
  }
  if (out.size === 0) fail('an empty dictionary');
  return out;
}
