import { randomUUID } from 'node:crypto';

/**
 * RFC 9562 §5.7 UUIDv7: a 48-bit Unix millisecond timestamp, then 74 random bits. The ids Clearance
 * mints for rows that are looked up by id and inserted all day long — audit events
 * (src/audit/recorder.ts) and the txns it mints for trades (src/transactions/txn.ts) — are
 * time-ordered, so the indexes that hold them grow at their right edge instead of taking an insert
 * at a random page each: in SQLite every page a transaction touches is written again at its
 * COMMIT, and an index larger than the page cache reads a page from the file per random insert
 * (docs/performance.md). The 74 random bits keep an id as unguessable as it needs to be.
 */
export function uuidV7(ms: number): string {
  const random = randomUUID(); // version 4: its variant bits are already RFC 9562's, the rest random
  return timePrefix(Math.max(0, Math.floor(ms))) + random.slice(15);
}

// The timestamp part of the last millisecond's ids: a busy recorder makes dozens within one.
let prefixMs = -1;
let prefix = '';

/** `tttttttt-tttt-7` for the millisecond `ms`. */
function timePrefix(ms: number): string {
  if (ms !== prefixMs) {
    const t = ms.toString(16).padStart(12, '0').slice(-12);
    prefix = `${t.slice(0, 8)}-${t.slice(8, 12)}-7`;
    prefixMs = ms;
  }
  return prefix;
}
