import { execFile, spawn } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { secretVariables } from '../../config.ts';
import { CustodyError, type CustodyKey, type CustodyKeyType, type KeyCustody } from './custody.ts';
import { verifyCustodySignature } from './software.ts';

export interface Pkcs11Options {
  /** The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so or a vendor HSM's. */
  module: string;
  /** The token's label. */
  tokenLabel: string;
  /** The user PIN: handed to pkcs11-tool through its environment, never its command line. */
  pin: string;
  /** Default `pkcs11-tool` (Debian's opensc). */
  tool?: string;
}

const keyGen: Record<CustodyKeyType, string> = { 'EC-P256': 'EC:prime256v1', Ed25519: 'EC:edwards25519', 'RSA-3072': 'rsa:3072' };
const pinVariable = 'CLEARANCE_PKCS11_TOOL_PIN';

/**
 * PKCS#11 key custody without a native addon: Debian's `pkcs11-tool` (opensc) drives the token as a
 * subprocess for the rare signatures a CA makes — a certificate, a CRL, an OCSP responder's
 * certificate, an audit checkpoint — at a few milliseconds each (docs/pki.md "Key custody"). Keys
 * are generated inside the token and never leave it (pkcs11-tool cannot read a private key); a
 * key's `ref` is an RFC 7512 URI of token and object id. The PIN goes through the subprocess's
 * environment (`--pin env:…`), never its arguments (visible in `ps`), and never into an error.
 * Every signature is verified with the public key before it is returned: fail closed.
 */
export class Pkcs11Custody implements KeyCustody {
  readonly kind = 'pkcs11';
  readonly #options: Pkcs11Options;
  readonly #loaded = new Map<string, CustodyKey>();

  constructor(options: Pkcs11Options) {
    this.#options = options;
  }

  async generate(label: string, type: CustodyKeyType): Promise<CustodyKey> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(label)) throw new CustodyError(`a PKCS#11 key label is 1 to 64 of letters, digits and ._- ("${label.slice(0, 80)}")`);
    const listed = await this.#run(['--login', '--list-objects', '--type', 'privkey']);
    if (listed.split('\n').some((line) => line.trim() === `label:      ${label}`)) throw new CustodyError(`the PKCS#11 token holds a key labelled "${label}" already`);
    const id = randomBytes(8).toString('hex');
    await this.#run(['--login', '--keypairgen', '--key-type', keyGen[type], '--label', label, '--id', id, '--usage-sign']);
    return this.load(refOf(this.#options.tokenLabel, id));
  }

  async load(ref: string): Promise<CustodyKey> {
    const cached = this.#loaded.get(ref);
    if (cached) return cached;
    const { token, id } = parseRef(ref);
    if (token !== this.#options.tokenLabel) throw new CustodyError(`custody key ${ref} is in token "${token}", not the configured "${this.#options.tokenLabel}"`);
    const publicKey = await this.#withFiles(async (dir) => {
      const out = join(dir, 'public');
      await this.#run(['--read-object', '--type', 'pubkey', '--id', id, '--output-file', out]);
      const bytes = await readFile(out);
      // pkcs11-tool writes an SPKI: DER for EC and RSA keys, PEM for EdDSA keys.
      return bytes.subarray(0, 5).toString() === '-----' ? createPublicKey(bytes.toString('utf8')) : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    });
    const key = this.#key(ref, id, typeOf(publicKey), publicKey);
    this.#loaded.set(ref, key);
    return key;
  }

  #key(ref: string, id: string, type: CustodyKeyType, publicKey: KeyObject): CustodyKey {
    const key: CustodyKey = {
      ref,
      type,
      publicKey,
      sign: (data) =>
        this.#withFiles(async (dir) => {
          const input = join(dir, 'in');
          const output = join(dir, 'out');
          // ECDSA over a digest computed here (softhsm2 offers plain CKM_ECDSA); EdDSA and RSA take the message.
          await writeFile(input, type === 'EC-P256' ? createHash('sha256').update(data).digest() : data, { mode: 0o600 });
          const mechanism = type === 'EC-P256' ? 'ECDSA' : type === 'Ed25519' ? 'EDDSA' : 'SHA256-RSA-PKCS';
          await this.#run(['--login', '--sign', '--mechanism', mechanism, '--id', id, '--input-file', input, '--output-file', output]);
          const signature = await readFile(output);
          if (!verifyCustodySignature(key, data, signature)) throw new CustodyError(`the PKCS#11 token's signature with ${ref} does not verify with its public key`);
          return signature;
        }),
    };
    return key;
  }

  /**
   * Makes an AES-256 secret key in the token (sensitive, never extractable) under `label`: the key
   * that wraps the master key's data key (src/keys/master-key-pkcs11.ts).
   */
  async generateSecretKey(label: string): Promise<void> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(label)) throw new CustodyError(`a PKCS#11 key label is 1 to 64 of letters, digits and ._- ("${label.slice(0, 80)}")`);
    if ((await this.#secretKeyIds()).has(label)) throw new CustodyError(`the PKCS#11 token holds a secret key labelled "${label}" already`);
    await this.#run(['--login', '--keygen', '--key-type', 'AES:32', '--label', label, '--id', randomBytes(8).toString('hex'), '--usage-decrypt', '--sensitive']);
  }

  /**
   * Encrypts with the token's AES key `label` (AES-CBC with PKCS#7 padding, a random IV first in the
   * result). No integrity of its own: the caller checks what it decrypts (a key's fingerprint).
   * The plaintext goes through pkcs11-tool's standard input, never a file.
   */
  async encryptWithSecretKey(label: string, plaintext: Buffer): Promise<Buffer> {
    const iv = randomBytes(16);
    const ciphertext = await this.#runBinary(['--login', '--encrypt', '--mechanism', 'AES-CBC-PAD', '--iv', iv.toString('hex'), '--id', await this.#secretKeyId(label)], plaintext);
    return Buffer.concat([iv, ciphertext]);
  }

  /** Decrypts what `encryptWithSecretKey` made; the plaintext comes back on pkcs11-tool's standard output. */
  async decryptWithSecretKey(label: string, sealed: Buffer): Promise<Buffer> {
    if (sealed.length < 32 || sealed.length % 16 !== 0) throw new CustodyError('not a value encrypted with a PKCS#11 secret key');
    return this.#runBinary(['--login', '--decrypt', '--mechanism', 'AES-CBC-PAD', '--iv', sealed.subarray(0, 16).toString('hex'), '--id', await this.#secretKeyId(label)], sealed.subarray(16));
  }

  /** The object id of the secret key `label`: pkcs11-tool's --encrypt and --decrypt select by id (they ignore --label). */
  async #secretKeyId(label: string): Promise<string> {
    const id = (await this.#secretKeyIds()).get(label);
    if (id === undefined) throw new CustodyError(`the PKCS#11 token "${this.#options.tokenLabel}" holds no secret key labelled "${label.slice(0, 80)}"`);
    return id;
  }

  async #secretKeyIds(): Promise<Map<string, string>> {
    const listed = await this.#run(['--login', '--list-objects', '--type', 'secrkey']);
    const ids = new Map<string, string>();
    let label: string | undefined;
    for (const line of listed.split('\n')) {
      const labelled = /^\s*label:\s+(.*)$/.exec(line);
      if (labelled) label = labelled[1]!.trim();
      const id = /^\s*ID:\s+([0-9a-f]+)$/i.exec(line);
      if (id && label !== undefined) {
        ids.set(label, id[1]!.toLowerCase());
        label = undefined;
      }
    }
    return ids;
  }

  /** pkcs11-tool with bytes in (standard input) and out (standard output), for secrets that must not touch a file. */
  #runBinary(args: string[], input: Buffer): Promise<Buffer> {
    const { module, tokenLabel, pin, tool = 'pkcs11-tool' } = this.#options;
    const full = ['--module', module, '--token-label', tokenLabel, '--pin', `env:${pinVariable}`, ...args];
    return new Promise((resolve, reject) => {
      const child = spawn(tool, full, { env: toolEnvironment(pin), timeout: 30_000, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.on('error', (error) => reject(new CustodyError(`pkcs11-tool could not be run: ${error.message}`)));
      child.on('close', (code) => {
        if (code === 0) return resolve(Buffer.concat(out));
        const said = Buffer.concat(err).toString('utf8').replaceAll(pin, '****').trim().split('\n').filter((line) => !line.includes('ALWAYS_AUTHENTICATE')).slice(-3).join(' ');
        reject(new CustodyError(`pkcs11-tool ${args.find((a) => a.startsWith('--') && a !== '--login') ?? ''} failed: ${said || `exit ${code}`}`));
      });
      child.stdin.end(input);
    });
  }

  async #withFiles<T>(work: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'clearance-pkcs11-'));
    try {
      return await work(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  #run(args: string[]): Promise<string> {
    const { module, tokenLabel, pin, tool = 'pkcs11-tool' } = this.#options;
    const full = ['--module', module, '--token-label', tokenLabel, ...(args.includes('--login') ? ['--pin', `env:${pinVariable}`] : []), ...args];
    return new Promise((resolve, reject) => {
      execFile(tool, full, { env: toolEnvironment(pin), timeout: 30_000, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const said = `${stderr}`.replaceAll(pin, '****').trim().split('\n').slice(-3).join(' ');
        reject(new CustodyError(`pkcs11-tool ${args.find((a) => a.startsWith('--') && a !== '--login') ?? ''} failed: ${said || (error as Error).message}`));
      });
    });
  }
}

/** What every pkcs11-tool needs from the environment: where programs and temporary files are, the locale, the time zone. */
const baseEnvironment = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ', 'SOFTHSM2_CONF'];

/**
 * The subprocess's environment: the PIN, the few variables a tool and a PKCS#11 module need, and
 * those CLEARANCE_PKCS11_ENV names (comma-separated: a vendor module's configuration, e.g.
 * `ChrystokiConfigurationPath`) — never the rest of the server's, which holds CLEARANCE_MASTER_KEY,
 * CLEARANCE_PREVIOUS_MASTER_KEY and DATABASE_URL's password (docs/pki.md "Key custody").
 */
export function toolEnvironment(pin: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  // Listed or not, a secret the server reads (and the file naming it) is never the tool's.
  const secret = (name: string) => name.startsWith('CLEARANCE_') || (secretVariables as readonly string[]).some((s) => name === s || name === `${s}_FILE`);
  const extra = (env.CLEARANCE_PKCS11_ENV ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '' && !secret(name));
  const passed: NodeJS.ProcessEnv = {};
  for (const name of [...baseEnvironment, ...extra]) if (env[name] !== undefined) passed[name] = env[name];
  return { ...passed, [pinVariable]: pin };
}

/** RFC 7512: `pkcs11:token=<label>;id=%xx%yy…;type=private`. */
export function refOf(token: string, idHex: string): string {
  return `pkcs11:token=${encodeURIComponent(token)};id=${idHex.replace(/(..)/g, '%$1')};type=private`;
}

function parseRef(ref: string): { token: string; id: string } {
  const attributes = new Map(ref.replace(/^pkcs11:/, '').split(';').map((part) => part.split('=') as [string, string]));
  const token = attributes.get('token');
  const id = attributes.get('id');
  if (!ref.startsWith('pkcs11:') || token === undefined || id === undefined || !/^(%[0-9a-f]{2})+$/i.test(id)) throw new CustodyError(`"${ref.slice(0, 80)}" is not a PKCS#11 key reference`);
  return { token: decodeURIComponent(token), id: id.replaceAll('%', '').toLowerCase() };
}

function typeOf(key: KeyObject): CustodyKeyType {
  if (key.asymmetricKeyType === 'ed25519') return 'Ed25519';
  if (key.asymmetricKeyType === 'rsa') return 'RSA-3072';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'EC-P256';
  throw new CustodyError(`the PKCS#11 key is a ${key.asymmetricKeyType} key custody does not use`);
}
