/**
 * Signed checkpoints (tree heads) for the audit log, Ed25519 via node:crypto.
 */
import { sign, verify, type KeyObject } from "node:crypto";

/** A commitment to the audit tree at some size. */
export type Checkpoint = {
  /** Log identity, one line of text; distinguishes logs sharing a key. */
  origin: string;
  /** Number of leaves in the tree. */
  treeSize: number;
  /** RFC 9162 root hash, standard padded base64 of 32 bytes. */
  rootHash: string;
  /** When the checkpoint was sealed, epoch milliseconds. */
  time: number;
};

const ROOT_HASH_BYTES = 32;
const SIGNATURE_BYTES = 64;

/** True iff `s` is the canonical standard base64 encoding of exactly `bytes` bytes. */
export function isCanonicalBase64(s: unknown, bytes: number): s is string {
  if (typeof s !== "string") return false;
  const decoded = Buffer.from(s, "base64");
  // Node's decoder is lenient (skips junk, accepts url-safe and unpadded);
  // re-encoding rejects every alternative spelling so signatures and roots
  // have exactly one accepted form.
  return decoded.length === bytes && decoded.toString("base64") === s;
}

/** What is wrong with `cp` as a checkpoint (its origin, size, root and time), or undefined. */
export function checkpointProblem(cp: unknown): string | undefined {
  if (typeof cp !== "object" || cp === null) return "checkpoint must be an object";
  const { origin, treeSize, rootHash, time } = cp as Record<string, unknown>;
  // A newline in the origin would let one checkpoint's body parse as another's.
  if (typeof origin !== "string" || origin.length === 0 || /[\r\n]/.test(origin) || !origin.isWellFormed()) {
    return "origin must be a non-empty single line of text";
  }
  if (typeof treeSize !== "number" || !Number.isSafeInteger(treeSize) || treeSize < 0) {
    return "treeSize must be a non-negative safe integer";
  }
  if (!isCanonicalBase64(rootHash, ROOT_HASH_BYTES)) return "rootHash must be base64 of 32 bytes";
  if (typeof time !== "number" || !Number.isSafeInteger(time) || time < 0) {
    return "time must be a non-negative safe integer (epoch ms)";
  }
  return undefined;
}

/**
 * The exact text that is signed, modelled on the C2SP signed-note checkpoint
 * body with a time line appended:
 *
 * ```
 * <origin>\n
 * <treeSize in decimal>\n
 * <rootHash, standard base64>\n
 * <time in decimal epoch ms>\n
 * ```
 *
 * Signed as UTF-8 bytes. Fields are validated first so every checkpoint has a
 * single body and every body parses back to a single checkpoint.
 *
 * @throws TypeError if a field is malformed.
 */
export function checkpointBody(cp: Checkpoint): string {
  const problem = checkpointProblem(cp);
  if (problem !== undefined) throw new TypeError(`invalid checkpoint: ${problem}`);
  return `${cp.origin}\n${cp.treeSize}\n${cp.rootHash}\n${cp.time}\n`;
}

function isEd25519(key: unknown, type: "private" | "public"): key is KeyObject {
  return (
    typeof key === "object" &&
    key !== null &&
    (key as KeyObject).type === type &&
    (key as KeyObject).asymmetricKeyType === "ed25519"
  );
}

/**
 * Signs `checkpointBody(cp)` with Ed25519 and returns the 64-byte signature as
 * standard base64.
 *
 * @throws TypeError if the checkpoint is malformed or the key is not an
 *   Ed25519 private key.
 */
export function signCheckpoint(cp: Checkpoint, privateKey: KeyObject): string {
  if (!isEd25519(privateKey, "private")) throw new TypeError("signCheckpoint requires an Ed25519 private key");
  const body = Buffer.from(checkpointBody(cp), "utf8");
  return sign(null, body, privateKey).toString("base64");
}

/** `signCheckpoint` through a custody key (src/pki/custody): the audit key may live in an HSM. */
export async function signCheckpointWith(cp: Checkpoint, signer: { sign(data: Uint8Array): Promise<Buffer> }): Promise<string> {
  return (await signer.sign(Buffer.from(checkpointBody(cp), "utf8"))).toString("base64");
}

/**
 * Verifies an Ed25519 `signature` (standard base64) over `checkpointBody(cp)`.
 * Returns false, never throws, for a malformed checkpoint, signature or key.
 */
export function verifyCheckpoint(cp: Checkpoint, signature: string, publicKey: KeyObject): boolean {
  if (!isEd25519(publicKey, "public")) return false;
  if (checkpointProblem(cp) !== undefined) return false;
  if (!isCanonicalBase64(signature, SIGNATURE_BYTES)) return false;
  try {
    const body = Buffer.from(checkpointBody(cp), "utf8");
    return verify(null, body, publicKey, Buffer.from(signature, "base64"));
  } catch {
    return false;
  }
}
