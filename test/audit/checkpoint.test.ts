import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { checkpointBody, signCheckpoint, verifyCheckpoint, type Checkpoint } from "../../src/audit/checkpoint.ts";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");

const checkpoint: Checkpoint = {
  origin: "clearance.example/audit",
  treeSize: 1234,
  rootHash: createHash("sha256").update("root").digest("base64"),
  time: 1_767_225_600_000,
};

test("lays out the body as origin, size, root and time, one per line", () => {
  assert.equal(
    checkpointBody(checkpoint),
    `clearance.example/audit\n1234\n${checkpoint.rootHash}\n1767225600000\n`,
  );
});

test("round-trips a signature through signCheckpoint and verifyCheckpoint", () => {
  const signature = signCheckpoint(checkpoint, privateKey);
  assert.equal(Buffer.from(signature, "base64").length, 64);
  assert.ok(verifyCheckpoint(checkpoint, signature, publicKey));
  assert.ok(verifyCheckpoint({ ...checkpoint }, signature, publicKey));
});

test("signs deterministically, as Ed25519 does", () => {
  assert.equal(signCheckpoint(checkpoint, privateKey), signCheckpoint(checkpoint, privateKey));
});

test("rejects the signature when any field of the checkpoint is altered", () => {
  const signature = signCheckpoint(checkpoint, privateKey);
  const altered: Checkpoint[] = [
    { ...checkpoint, origin: "clearance.example/audit2" },
    { ...checkpoint, treeSize: 1235 },
    { ...checkpoint, treeSize: 0 },
    { ...checkpoint, rootHash: createHash("sha256").update("other").digest("base64") },
    { ...checkpoint, time: checkpoint.time + 1 },
  ];
  for (const cp of altered) assert.equal(verifyCheckpoint(cp, signature, publicKey), false, JSON.stringify(cp));
});

test("rejects a signature checked against a different key", () => {
  const other = generateKeyPairSync("ed25519");
  const signature = signCheckpoint(checkpoint, privateKey);
  assert.equal(verifyCheckpoint(checkpoint, signature, other.publicKey), false);
  assert.equal(verifyCheckpoint(checkpoint, signCheckpoint(checkpoint, other.privateKey), publicKey), false);
});

test("returns false for garbage or non-canonical signatures instead of throwing", () => {
  const signature = signCheckpoint(checkpoint, privateKey);
  const flipped = Buffer.from(signature, "base64");
  flipped[10] = flipped[10]! ^ 0x01;
  const garbage: unknown[] = [
    "",
    "not base64 at all!",
    Buffer.alloc(64).toString("base64"),
    Buffer.alloc(63).toString("base64"),
    flipped.toString("base64"),
    signature.replace(/=+$/, ""), // unpadded spelling of a valid signature
    Buffer.from(signature, "base64").toString("base64url"),
    ` ${signature}`,
    null,
    42,
  ];
  for (const sig of garbage) assert.equal(verifyCheckpoint(checkpoint, sig as string, publicKey), false, String(sig));
});

test("returns false for malformed checkpoints or keys instead of throwing", () => {
  const signature = signCheckpoint(checkpoint, privateKey);
  const malformed: unknown[] = [
    null,
    {},
    { ...checkpoint, origin: "" },
    { ...checkpoint, origin: "a\nb" },
    { ...checkpoint, treeSize: -1 },
    { ...checkpoint, treeSize: 1.5 },
    { ...checkpoint, treeSize: "1234" },
    { ...checkpoint, rootHash: "AAAA" },
    { ...checkpoint, rootHash: checkpoint.rootHash.replace(/=$/, "") },
    { ...checkpoint, time: Number.NaN },
  ];
  for (const cp of malformed) assert.equal(verifyCheckpoint(cp as Checkpoint, signature, publicKey), false);
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const badKeys: unknown[] = [null, "key", rsa.publicKey, privateKey];
  for (const key of badKeys) assert.equal(verifyCheckpoint(checkpoint, signature, key as KeyObject), false);
});

test("refuses to sign a malformed checkpoint or with a non-Ed25519 key", () => {
  assert.throws(() => signCheckpoint({ ...checkpoint, origin: "two\nlines" }, privateKey), TypeError);
  assert.throws(() => signCheckpoint({ ...checkpoint, rootHash: "short" }, privateKey), TypeError);
  assert.throws(() => signCheckpoint(checkpoint, publicKey), TypeError);
  assert.throws(() => checkpointBody({ ...checkpoint, time: -5 }), TypeError);
});
