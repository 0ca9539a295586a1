import { createHash, generateKeyPairSync, randomUUID, X509Certificate as NodeCertificate } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { caExtensions, newSerial, ocspResponderExtensions, pemOf, signCertificate } from './build.ts';
import type { Custodies } from './custody/custodies.ts';
import type { CustodyKey, CustodyKeyType } from './custody/custody.ts';
import { softwareKey } from './custody/software.ts';
import * as x509 from './x509.ts';

export type AuthorityRole = 'root' | 'issuing' | 'ocsp';

/** One of the CA's own certificates, parsed both ways (x509 for building, node:crypto for checks). */
export interface Authority {
  id: string;
  role: AuthorityRole;
  issuerId: string;
  subject: string;
  certificate: x509.X509Certificate;
  node: NodeCertificate;
  pem: string;
  keyRef: string | null;
  notBefore: number;
  notAfter: number;
}

export class PkiError extends Error {
  override name = 'PkiError';
}

/** The generation name that a change of the CA's own certificates bumps. */
const authoritiesGeneration = 'pki_authorities';
/** The delegated OCSP responder's certificate lives a week and is renewed with two days left. */
const responderLifetimeMs = 7 * 86400_000;
const responderRenewMs = 2 * 86400_000;

/** The CA's own certificates, cached, reloaded when another process changes them. */
export class Authorities {
  readonly #db: Kysely<Database>;
  readonly #custodies: Custodies;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Authority[]>;
  /** Responders being made, by issuing authority: requests arriving meanwhile wait for that one. */
  readonly #makingResponder = new Map<string, Promise<{ authority: Authority; key: CustodyKey }>>();

  constructor(db: Kysely<Database>, custodies: Custodies, clock: Clock) {
    this.#db = db;
    this.#custodies = custodies;
    this.#clock = clock;
    this.#cache = new GenerationCache(db, authoritiesGeneration, () => this.#load(), clock);
  }

  async all(): Promise<Authority[]> {
    return this.#cache.get();
  }

  async byId(id: string): Promise<Authority | undefined> {
    return (await this.all()).find((a) => a.id === id);
  }

  /**
   * The active issuing intermediate and its key; PkiError when the CA was not initialised. Inside
   * a transaction pass it as `executor`: on SQLite the cache's own reads would wait for it.
   */
  async issuing(executor?: Executor): Promise<{ authority: Authority; key: CustodyKey; chain: Authority[] }> {
    const all = executor ? await this.#load(executor) : await this.all();
    const authority = all.find((a) => a.role === 'issuing' && a.notAfter > this.#clock.now());
    if (!authority || !authority.keyRef) throw new PkiError('the CA is not initialised: run `clearance ca init`');
    return { authority, key: await this.#custodies.load(authority.keyRef, executor), chain: chainOf(all, authority) };
  }

  /** `authority` and the authorities above it, up to the root. */
  async chainOf(authority: Authority): Promise<Authority[]> {
    return chainOf(await this.all(), authority);
  }

  /**
   * The delegated OCSP responder of `issuing` and its key: its certificate is renewed (signed by
   * the issuing CA, a new key in software custody) when it has less than two days left, so a
   * responder never answers with an expired certificate — unless it ends with the issuing CA, which
   * no new one would outlive.
   */
  async ocspResponder(issuing: Authority): Promise<{ authority: Authority; key: CustodyKey }> {
    const current = this.#currentResponder(await this.all(), issuing);
    if (current?.keyRef) return { authority: current, key: await this.#custodies.load(current.keyRef) };
    // One making per issuing CA in this process: the requests of the same moment share it.
    const making = this.#makingResponder.get(issuing.id) ?? this.#makeResponder(issuing).finally(() => this.#makingResponder.delete(issuing.id));
    this.#makingResponder.set(issuing.id, making);
    return making;
  }

  /**
   * A responder for `issuing` that is current now. One that ends with its issuing CA cannot be
   * renewed to live longer: it stays current to the end, or every (unauthenticated) request would
   * sign and store a new one.
   */
  #currentResponder(all: Authority[], issuing: Authority): Authority | undefined {
    const now = this.#clock.now();
    return all.find((a) => a.role === 'ocsp' && a.issuerId === issuing.id && a.keyRef && a.notAfter > now && (a.notAfter - now > responderRenewMs || a.notAfter >= issuing.notAfter));
  }

  async #makeResponder(issuing: Authority): Promise<{ authority: Authority; key: CustodyKey }> {
    // Another node may have made one since this node's cache was read: take it rather than make a second.
    const made = this.#currentResponder(await this.#load(), issuing);
    if (made?.keyRef) {
      this.#cache.invalidate();
      return { authority: made, key: await this.#custodies.load(made.keyRef) };
    }
    if (!issuing.keyRef) throw new PkiError(`issuing authority ${issuing.id} has no key in custody`);
    const now = this.#clock.now();
    const issuingKey = await this.#custodies.load(issuing.keyRef);
    // The label is unique (custody_keys.label): two nodes making a responder in the same millisecond each get their own.
    const key = await this.#custodies.software.generate(`ocsp-${issuing.id}-${now}-${randomUUID()}`, 'EC-P256');
    const certificate = await signCertificate(
      {
        serial: newSerial(),
        subject: `CN=OCSP responder for ${cnOf(issuing.subject)}`,
        publicKey: key.publicKey.export({ format: 'der', type: 'spki' }),
        notBefore: new Date(now - 60_000),
        notAfter: new Date(Math.min(now + responderLifetimeMs, issuing.notAfter)),
        extensions: ocspResponderExtensions(),
      },
      issuing.certificate,
      issuingKey,
    );
    await this.#db.transaction().execute(async (trx) => {
      await trx.insertInto('pki_authorities').values(authorityRow(certificate, 'ocsp', issuing.id, key.ref, now)).execute();
      await bumpGeneration(trx, authoritiesGeneration);
    });
    this.#cache.invalidate();
    const authority = (await this.all()).find((a) => a.id === authorityId('ocsp', certificate))!;
    return { authority, key };
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #load(executor: Executor = this.#db): Promise<Authority[]> {
    const rows = await executor.selectFrom('pki_authorities').selectAll().where('status', '=', 'active').orderBy('created_at', 'desc').execute();
    return rows.map((row) => ({
      id: row.id,
      role: row.role as AuthorityRole,
      issuerId: row.issuer_id,
      subject: row.subject,
      certificate: new x509.X509Certificate(row.certificate),
      node: new NodeCertificate(row.certificate),
      pem: row.certificate,
      keyRef: row.key_ref,
      notBefore: Number(row.not_before),
      notAfter: Number(row.not_after),
    }));
  }
}

type Executor = Kysely<Database> | Transaction<Database>;

function chainOf(all: Authority[], authority: Authority): Authority[] {
  const chain = [authority];
  let current = authority;
  while (current.issuerId !== current.id) {
    const next = all.find((a) => a.id === current.issuerId);
    if (!next) break;
    chain.push(next);
    current = next;
  }
  return chain;
}

function cnOf(subject: string): string {
  return /CN=([^,]+)/.exec(subject)?.[1] ?? subject;
}

/** `root-…`, `issuing-…`, `ocsp-…`: the role and the first 16 hex digits of the key's SHA-256. */
export function authorityId(role: AuthorityRole, certificate: x509.X509Certificate): string {
  return `${role}-${createHash('sha256').update(Buffer.from(certificate.publicKey.rawData)).digest('hex').slice(0, 16)}`;
}

function authorityRow(certificate: x509.X509Certificate, role: AuthorityRole, issuerId: string | null, keyRef: string | null, now: number): Database['pki_authorities'] {
  const id = authorityId(role, certificate);
  return {
    id,
    role,
    issuer_id: issuerId ?? id,
    subject: certificate.subject,
    certificate: pemOf(certificate),
    key_ref: keyRef,
    not_before: certificate.notBefore.getTime(),
    not_after: certificate.notAfter.getTime(),
    status: 'active',
    created_at: now,
  };
}

export interface InitOptions {
  /** The CA's name, e.g. "Example Broker Workload CA". */
  name: string;
  organization?: string;
  /** Where the root key goes: exported (encrypted with `passphrase`) and never stored, or a PKCS#11 token. */
  root: { custody: 'export'; passphrase: string } | { custody: 'pkcs11' };
  intermediateCustody: 'software' | 'pkcs11';
  keyType: CustodyKeyType;
  rootLifetimeDays: number;
  intermediateLifetimeDays: number;
}

export interface InitResult {
  root: x509.X509Certificate;
  intermediate: x509.X509Certificate;
  /** The root private key, PKCS#8 PEM encrypted with AES-256-CBC under the passphrase (export custody). */
  encryptedRootKey?: string;
  rootKeyRef?: string;
  intermediateKeyRef: string;
}

/**
 * `clearance ca init`: a root (self-signed, path length 1) whose key is exported encrypted or kept
 * in the PKCS#11 token — never in the database — and an online issuing intermediate (path length
 * 0) whose key is in custody. Refuses when an issuing CA is already active.
 */
export async function initCa(db: Kysely<Database>, custodies: Custodies, clock: Clock, options: InitOptions): Promise<InitResult> {
  const now = clock.now();
  const existing = await db.selectFrom('pki_authorities').select('id').where('role', '=', 'issuing').where('status', '=', 'active').executeTakeFirst();
  if (existing) throw new PkiError(`the CA is initialised already (issuing authority ${existing.id})`);
  const o = options.organization ? `, O=${dnValue(options.organization)}` : '';
  let rootKey: CustodyKey;
  let encryptedRootKey: string | undefined;
  if (options.root.custody === 'export') {
    const pair = generate(options.keyType);
    rootKey = softwareKey('offline:root', options.keyType, pair);
    encryptedRootKey = pair.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: options.root.passphrase }) as string;
  } else {
    rootKey = await custodies.of('pkcs11').generate(`clearance-root-${now}`, options.keyType);
  }
  const root = await signCertificate(
    {
      serial: newSerial(),
      subject: `CN=${dnValue(options.name)} Root${o}`,
      publicKey: rootKey.publicKey.export({ format: 'der', type: 'spki' }),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + options.rootLifetimeDays * 86400_000),
      extensions: caExtensions(1),
    },
    null,
    rootKey,
  );
  const intermediateKey = await custodies.of(options.intermediateCustody).generate(`clearance-issuing-${now}`, options.keyType);
  const intermediate = await signCertificate(
    {
      serial: newSerial(),
      subject: `CN=${dnValue(options.name)} Issuing${o}`,
      publicKey: intermediateKey.publicKey.export({ format: 'der', type: 'spki' }),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(Math.min(now + options.intermediateLifetimeDays * 86400_000, root.notAfter.getTime())),
      extensions: caExtensions(0),
    },
    root,
    rootKey,
  );
  const rootRef = options.root.custody === 'pkcs11' ? rootKey.ref : null;
  await db.transaction().execute(async (trx) => {
    const rootRow = authorityRow(root, 'root', null, rootRef, now);
    await trx.insertInto('pki_authorities').values(rootRow).execute();
    await trx.insertInto('pki_authorities').values(authorityRow(intermediate, 'issuing', rootRow.id, intermediateKey.ref, now)).execute();
    await bumpGeneration(trx, authoritiesGeneration);
  });
  return {
    root,
    intermediate,
    ...(encryptedRootKey ? { encryptedRootKey } : {}),
    ...(rootRef ? { rootKeyRef: rootRef } : {}),
    intermediateKeyRef: intermediateKey.ref,
  };
}

function generate(type: CustodyKeyType) {
  switch (type) {
    case 'EC-P256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'Ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'RSA-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
  }
}

/** A DN attribute value from operator input: no characters with a meaning in a DN string. */
function dnValue(text: string): string {
  if (!/^[A-Za-z0-9 ._()'&-]{1,64}$/.test(text)) throw new PkiError(`"${text.slice(0, 80)}" cannot be a CA name (letters, digits, spaces and ._()'&- only, 1 to 64)`);
  return text;
}
