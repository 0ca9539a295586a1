import type { Context } from '../context.ts';
import { describeAuthorizationDetails, type AuthorizationDetail } from '../authorization/authorization-details.ts';
import { findUser, type User } from '../identity/users.ts';
import { independenceProblem, type Approver } from './independence.ts';
import type { ApprovalDescription, ApprovalKind } from './kinds.ts';
import { approvalKindOf } from './kinds/index.ts';
import { decisionsOf, effectiveStatus, findApprovalRequest, listPendingApprovalRequests, type ApprovalDecision, type ApprovalRequest, type ApproverProof } from './requests.ts';

/**
 * Who may decide which request (docs/approvals.md "The approver's side"), for the approvals page
 * and the admin API, whatever the request's kind: its subject, while their own approval is
 * pending (CIBA); or a second person who is independent of it (src/approvals/independence.ts) and
 * whom the kind finds eligible (its `eligible`: policy, role, custodian list), and who has not
 * decided it yet. This decides what a person is SHOWN; the decision itself is decided again, with
 * the real proof, by decideApprovalRequest.
 */

/** The person as the decision rule sees them. */
export function approverOf(user: Pick<User, 'id' | 'username' | 'roles' | 'desks'>): Approver {
  return { userId: user.id, username: user.username, roles: user.roles, desks: user.desks };
}

export type DeciderRole = 'subject' | 'approver';

/**
 * As whom `approver` may decide `request` now (with a proof like `proof`), or undefined when they
 * may not: not pending, unknown kind, already decided by them, a second person on a request that
 * asks for none, not independent, not eligible.
 * Fail closed: an eligibility that cannot be decided is a no.
 */
export async function deciderRole(ctx: Context, request: ApprovalRequest, approver: Approver, proof: ApproverProof, decided?: boolean): Promise<DeciderRole | undefined> {
  const kind = approvalKindOf(request.kind);
  if (!kind || effectiveStatus(request, ctx.clock.now()) !== 'pending') return undefined;
  const already = decided ?? (await decisionsOf(ctx.storage.db, request.id)).some((d) => d.approver === approver.userId);
  if (already) return undefined;
  if (approver.userId === request.subject && request.subjectApproval === 'pending') return 'subject';
  // A request that asks no second person is in nobody else's hands (decideApprovalRequest refuses them).
  if (request.requiredApprovals === 0) return undefined;
  const options = kind.independence ? await kind.independence(ctx, request) : {};
  if (independenceProblem(approver, request, options)) return undefined;
  try {
    return (await kind.eligible(ctx, request, approver, proof, { listing: true })) === undefined ? 'approver' : undefined;
  } catch (error) {
    ctx.log.warn({ err: error }, 'approval eligibility failed while listing: not shown');
    return undefined;
  }
}

/** Most requests the approvals page and the admin API list at once. */
export const maxListedRequests = 100;

/** How many pending requests are read at once while looking for those a person may decide. */
const candidatePage = 200;

/**
 * Most pending requests one listing looks at (each costs an eligibility decision): a client that
 * opens requests by the thousand slows no approver's page past this. Beyond it the oldest 5,000
 * are what an approver sees; the pending requests' own expiry (a day at most) drains the rest.
 */
const maxCandidates = 5_000;

/**
 * The pending requests `approver` may decide, oldest first, up to `maxListedRequests`: those about
 * them (their own approval pending) and the others they may decide as a second person. `proofOf`
 * is the proof they would give (the page: their strongest passkey; the admin API: the token
 * presented). Complete up to the page size however many older requests they may not decide: SQL
 * leaves out what it can tell (their own, asked or already decided by them), and the rest is read
 * page by page, oldest first, until the list is full or every pending request was looked at.
 */
export async function decidableRequests(
  ctx: Context,
  approver: Approver,
  proof: ApproverProof,
): Promise<{ request: ApprovalRequest; kind: ApprovalKind; role: DeciderRole }[]> {
  const listed: { request: ApprovalRequest; kind: ApprovalKind; role: DeciderRole }[] = [];
  const consider = async (request: ApprovalRequest, decided?: boolean) => {
    const kind = approvalKindOf(request.kind);
    if (!kind) return;
    const role = await deciderRole(ctx, request, approver, proof, decided);
    if (role) listed.push({ request, kind, role });
  };
  // Their own: the subject decides only while their approval is pending, never as a second person.
  for (const request of await listPendingApprovalRequests(ctx, { subject: approver.userId, subjectApproval: 'pending', limit: maxListedRequests })) await consider(request);
  const own = listed.length;
  let after: ApprovalRequest | undefined;
  for (let read = 0; read < maxCandidates; read += candidatePage) {
    const page = await listPendingApprovalRequests(ctx, { secondPerson: approver.userId, ...(after ? { after } : {}), limit: candidatePage });
    for (const request of page) {
      // Not decided by them: the query left those out.
      await consider(request, false);
      if (listed.length - own >= maxListedRequests) break;
    }
    if (page.length < candidatePage || listed.length - own >= maxListedRequests) break;
    after = page.at(-1);
  }
  return listed.sort((a, b) => a.request.createdAt - b.request.createdAt || a.request.id.localeCompare(b.request.id)).slice(0, maxListedRequests);
}

/**
 * A request `approver` may decide, by id, with their role and the kind; undefined for one that
 * does not exist or that they may not decide (the same answer: an id says nothing of whose it is).
 */
export async function decidableRequest(
  ctx: Context,
  id: string,
  approver: Approver,
  proof: ApproverProof,
): Promise<{ request: ApprovalRequest; kind: ApprovalKind; role: DeciderRole } | undefined> {
  if (!requestIdPattern.test(id)) return undefined;
  const request = await findApprovalRequest(ctx.storage.db, id);
  const kind = request && approvalKindOf(request.kind);
  if (!request || !kind) return undefined;
  const role = await deciderRole(ctx, request, approver, proof);
  return role ? { request, kind, role } : undefined;
}

/** Request ids are UUIDs (or ids of that shape); anything else is unknown without a lookup. */
export const requestIdPattern = /^[A-Za-z0-9-]{1,64}$/;

/** What an approver is shown of a request: the kind's own words, and who, what, until when. */
export interface ApprovalView {
  id: string;
  kind: string;
  status: string;
  description: ApprovalDescription;
  requester: { type: 'user' | 'client'; id: string; name: string };
  subject: { id: string; name: string };
  client?: { id: string; name: string };
  /** The CIBA binding message, when the content holds one. */
  bindingMessage?: string;
  /** The content's RFC 9396 authorization_details, one plain sentence each, when it holds some. */
  authorizationDetails?: string[];
  /** Exactly what a passkey signs the digest of. */
  content: Record<string, unknown>;
  digest: string;
  approvals: number;
  requiredApprovals: number;
  subjectApproval: string;
  createdAt: number;
  expiresAt: number;
}

/** The view of a request, with names resolved (a person's name, else their username; a client's name, else its id). */
export async function approvalView(ctx: Context, request: ApprovalRequest, kind: ApprovalKind): Promise<ApprovalView> {
  const nameOf = (user: User | undefined, id: string) => (user ? (user.name ?? user.username) : id);
  const personName = async (id: string) => nameOf(await findUser(ctx, id), id);
  const clientName = async (id: string) => {
    const name = (await ctx.clients.get(id))?.metadata.client_name;
    return typeof name === 'string' && name ? name : id;
  };
  const [requesterName, subject, client] = await Promise.all([
    request.requesterType === 'user' ? personName(request.requester) : clientName(request.requester),
    findUser(ctx, request.subject),
    request.clientId !== undefined ? clientName(request.clientId).then((name) => ({ id: request.clientId!, name })) : undefined,
  ]);
  const bindingMessage = request.content.binding_message;
  const details = request.content.authorization_details;
  return {
    id: request.id,
    kind: request.kind,
    status: effectiveStatus(request, ctx.clock.now()),
    // The subject's username is read now, never stored in the content (src/ciba/open.ts).
    description: kind.describe(request, subject ? { subjectUsername: subject.username } : {}),
    requester: { type: request.requesterType, id: request.requester, name: requesterName },
    subject: { id: request.subject, name: nameOf(subject, request.subject) },
    ...(client ? { client } : {}),
    ...(typeof bindingMessage === 'string' ? { bindingMessage } : {}),
    ...(Array.isArray(details) ? { authorizationDetails: plainDetails(details) } : {}),
    content: request.content,
    digest: request.digest,
    approvals: request.approvals,
    requiredApprovals: request.requiredApprovals,
    subjectApproval: request.subjectApproval,
    createdAt: request.createdAt,
    expiresAt: request.expiresAt,
  };
}

/** One sentence per entry; an entry the registered types cannot word is shown as its JSON. */
function plainDetails(details: unknown[]): string[] {
  return details.map((entry) => {
    try {
      if (entry && typeof entry === 'object' && typeof (entry as { type?: unknown }).type === 'string') {
        return describeAuthorizationDetails([entry as AuthorizationDetail])[0]!;
      }
    } catch {
      // Fall through to the exact JSON.
    }
    return JSON.stringify(entry);
  });
}

/** A decision as the admin API shows it (the evidence itself is in the audit event). */
export function decisionView(decision: ApprovalDecision): Record<string, unknown> {
  return {
    approver: decision.approver,
    role: decision.role,
    decision: decision.decision,
    ...(decision.reason !== undefined ? { reason: decision.reason } : {}),
    method: decision.method,
    acr: decision.acr,
    amr: decision.amr,
    evidence_digest: decision.evidenceDigest,
    at: decision.at,
  };
}
