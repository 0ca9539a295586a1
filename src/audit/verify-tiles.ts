/**
 * Step 5 of `verify` (verify.ts): the tiles the sealer stored (audit_nodes, tiles.ts) are exactly
 * the ones the verified leaves make. Inclusion and consistency proofs, and with them every evidence
 * export, read their subtree hashes from these rows: an altered or removed tile would make the
 * proofs fail against the signed roots while the log itself verified.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import type { VerifyProblem } from './verify.ts';

export interface Tile {
  level: number;
  idx: number;
  hash: Uint8Array;
}

/**
 * The first stored tile that is not one of `expected` (the tiles completed by the leaves from
 * `start` to `size`, in the order the scan made them), or the first expected tile not stored.
 * Tiles wholly before `start` cover pruned leaves and cannot be recomputed: they are left alone.
 */
export async function tileProblem(db: Kysely<Database>, expected: readonly Tile[], start: number, size: number): Promise<VerifyProblem | undefined> {
  const rows = await db.selectFrom('audit_nodes').select(['level', 'idx', 'hash']).execute();
  const made = new Map(expected.map((t) => [`${t.level}:${t.idx}`, t]));
  const seen = new Set<string>();
  let first: VerifyProblem | undefined;
  const note = (level: number, idx: number, what: string) => {
    const leafIndex = idx * 2 ** level;
    if (!first || leafIndex < first.leafIndex!) first = { message: `the tile at level ${level}, index ${idx} ${what} (proofs read it)`, leafIndex };
  };
  for (const row of rows) {
    const level = Number(row.level);
    const idx = Number(row.idx);
    const end = (idx + 1) * 2 ** level;
    if (end <= start) continue;
    const key = `${level}:${idx}`;
    const tile = made.get(key);
    if (!tile) note(level, idx, end > size ? 'covers leaves that are not sealed' : 'is not one the leaves make (inserted)');
    else if (!Buffer.from(tile.hash).equals(Buffer.from(row.hash))) note(level, idx, 'does not hash the leaves below it (altered)');
    seen.add(key);
  }
  for (const tile of expected) if (!seen.has(`${tile.level}:${tile.idx}`)) note(tile.level, tile.idx, 'is missing (removed)');
  return first;
}
