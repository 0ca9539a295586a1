/**
 * A KYC record (issue 16 item 4, docs/risk.md "KYC/AML lifecycle"): what Clearance knows of a
 * person's or a legal entity's know-your-customer review. The one source of the KYC status every
 * decision sees (`User.kyc_status`, `LegalEntity.kyc_status`, `context.kyc_status` of a person).
 *
 * - `pending`: not yet verified; `verified`: verified, until `review_due`; `expired`: the review
 *   is overdue; `rejected`: the review failed; `frozen`: held pending a compliance decision (a
 *   sanctions/PEP screening hit, or an administrator's or provider's freeze, or both: `frozenBy`
 *   names the one besides screening), the status it had kept in `previousStatus`.
 * - A `verified` record past its review date IS `expired` (`effectiveStatus`): at every read, so
 *   no decision ever sees a stale `verified`, and written so by the periodic sweep (./expiry.ts).
 *   Only `verified` expires: a pending, rejected or frozen record is no better once overdue.
 */
import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';
import { join, type Validator } from '../../validation.ts';

export const kycStatuses = ['pending', 'verified', 'expired', 'rejected', 'frozen'] as const;
export type KycStatus = (typeof kycStatuses)[number];

/** Whose record: a person by user id, a legal entity by LEI. */
export interface KycPrincipal {
  type: 'User' | 'LegalEntity';
  id: string;
}

/** What a change writes: the status and the facts of the review. */
export interface KycFields {
  status: KycStatus;
  /** The verification level (e.g. `basic`, `standard`, `enhanced`). */
  level?: string;
  /** Who verified: a declared provider's id, or any short name (a manual review). */
  provider?: string;
  /** When the review is due (epoch ms); a `verified` record is `expired` from then on. */
  reviewDue?: number;
  /** Where the evidence is (a case or check id at the provider); never the evidence itself. */
  evidenceRef?: string;
}

export interface KycRecord extends KycFields {
  principal: KycPrincipal;
  /** A frozen record's status before the freeze (undefined: it had no record). */
  previousStatus?: KycStatus;
  /**
   * Who froze it besides screening (`admin:<actor>`, `provider:<id>`, `apply:<actor>`): a freeze
   * compliance's clearing of the matches does not lift (../kyc/changes.ts). Undefined when only
   * screening holds the freeze, or it is not frozen.
   */
  frozenBy?: string;
  /** Counted up by every change: writers update conditionally on the version they read. */
  version: number;
  updatedAt: number;
  updatedBy: string;
  /** The `kyc` declaration apply last wrote (its canonical JSON). */
  declared?: string;
}

/** The status as of `now`: a `verified` record past its review date is `expired`. */
export function effectiveStatus(record: Pick<KycRecord, 'status' | 'reviewDue'>, now: number): KycStatus {
  return record.status === 'verified' && record.reviewDue !== undefined && record.reviewDue <= now ? 'expired' : record.status;
}

/** The record as of `now` (its status effective). */
export function asOf(record: KycRecord, now: number): KycRecord {
  const status = effectiveStatus(record, now);
  return status === record.status ? record : { ...record, status };
}

export const levelPattern = /^[a-z0-9][a-z0-9_.:-]{0,63}$/;
export const providerPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const maxEvidenceRefLength = 256;
const kycFieldNames = ['status', 'level', 'provider', 'review_due', 'evidence_ref'] as const;

/**
 * Reads the members of a KYC change — apply's `kyc` block, an admin PUT body, a provider's webhook
 * event: `status` (required), and optionally `level`, `provider`, `review_due` (an ISO 8601 date,
 * due at 00:00 UTC that day, or an RFC 3339 date-time) and `evidence_ref`. `extra` names other
 * members the caller reads itself.
 */
export function readKycFields(v: Validator, path: string, value: unknown, extra: readonly string[] = []): KycFields | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, [...kycFieldNames, ...extra]);
  const status = v.string(join(path, 'status'), o.status, { oneOf: kycStatuses }) as KycStatus | undefined;
  const level = o.level === undefined ? undefined : v.string(join(path, 'level'), o.level, { pattern: levelPattern, patternMessage: 'must be a lowercase level such as basic, standard or enhanced' });
  const provider = o.provider === undefined ? undefined : v.string(join(path, 'provider'), o.provider, { pattern: providerPattern, patternMessage: 'must be lowercase letters, digits, _ and - (a provider id)' });
  const reviewDue = o.review_due === undefined ? undefined : readReviewDue(v, join(path, 'review_due'), o.review_due);
  const evidenceRef = o.evidence_ref === undefined ? undefined : readEvidenceRef(v, join(path, 'evidence_ref'), o.evidence_ref);
  if (v.problems.length !== before || status === undefined) return undefined;
  return {
    status,
    ...(level !== undefined ? { level } : {}),
    ...(provider !== undefined ? { provider } : {}),
    ...(reviewDue !== undefined ? { reviewDue } : {}),
    ...(evidenceRef !== undefined ? { evidenceRef } : {}),
  };
}

const datePattern = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;
const dateTimePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$/;

function readReviewDue(v: Validator, path: string, value: unknown): number | undefined {
  const text = v.string(path, value, { maxLength: 40 });
  if (text === undefined) return undefined;
  const ms = datePattern.test(text) ? Date.parse(`${text}T00:00:00Z`) : dateTimePattern.test(text) ? Date.parse(text) : NaN;
  // Date.parse rolls 2025-02-30 over into March: a date that does not exist is refused.
  if (!Number.isFinite(ms) || (datePattern.test(text) && new Date(ms).toISOString().slice(0, 10) !== text)) {
    return v.fail(path, 'must be an ISO 8601 date (2027-06-30) or an RFC 3339 date-time');
  }
  return ms;
}

function readEvidenceRef(v: Validator, path: string, value: unknown): string | undefined {
  const text = v.string(path, value, { maxLength: maxEvidenceRefLength, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
  if (text === undefined) return undefined;
  // It goes into the audit event (before/after): the log never holds a token or a key.
  try {
    assertNoSecrets(text);
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    return v.fail(path, 'is a reference to the evidence, never a token or a key');
  }
  return text;
}

/** The review due date as the API and audit events show it: the date, or the date-time when not midnight UTC. */
export function reviewDueText(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  const iso = new Date(ms).toISOString();
  return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso;
}

/** The fields as JSON members (the admin API's, audit events' and apply's spelling). */
export function fieldsJson(fields: KycFields): Record<string, string> {
  return {
    status: fields.status,
    ...(fields.level !== undefined ? { level: fields.level } : {}),
    ...(fields.provider !== undefined ? { provider: fields.provider } : {}),
    ...(fields.reviewDue !== undefined ? { review_due: reviewDueText(fields.reviewDue)! } : {}),
    ...(fields.evidenceRef !== undefined ? { evidence_ref: fields.evidenceRef } : {}),
  };
}
