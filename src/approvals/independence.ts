/**
 * Four-eyes independence, in code (issue 15; docs/approvals.md "Who may approve"): whatever a
 * policy allows, an approval counts only when it comes from a second person. Cedar decides who
 * may approve what (src/approvals/kinds.ts); this rule is checked first and no policy can lift it.
 */

/** Who is deciding: a signed-in person (never a client). */
export interface Approver {
  /** The person's id: the `sub` of their tokens. */
  userId: string;
  username: string;
  roles: readonly string[];
  desks: readonly string[];
}

/** Whom a request concerns, for the independence rule. */
export interface ApprovalParties {
  /** Who asked: a person's id or a client id (`requesterType`). */
  requester: string;
  requesterType: 'user' | 'client';
  /** The person the approval is about: the token's subject, the person recovering, the emergency account. */
  subject: string;
  /** The subjects of the act chain the token would carry (RFC 8693 §4.1), outermost first. */
  actors: readonly string[];
}

export type IndependenceProblem = 'approver_is_requester' | 'approver_is_subject' | 'approver_in_act_chain' | 'approver_on_requesters_desk';

/**
 * Why `approver` may not approve a request with these parties (undefined: independent).
 * 1. never the requester — nobody approves their own request;
 * 2. never the subject — nobody approves what is granted to or done for themselves;
 * 3. never an actor in the delegation chain — whoever acts in the trade is not its second pair of eyes;
 * 4. when the kind asks for it (`distinctDesks`, e.g. a firm's recovery rule), never someone who
 *    shares a desk with the requester or the subject (`partyDesks`).
 */
export function independenceProblem(
  approver: Approver,
  parties: ApprovalParties,
  options: { distinctDesks?: boolean; partyDesks?: readonly string[] } = {},
): IndependenceProblem | undefined {
  if (parties.requesterType === 'user' && parties.requester === approver.userId) return 'approver_is_requester';
  if (parties.subject === approver.userId) return 'approver_is_subject';
  if (parties.actors.includes(approver.userId)) return 'approver_in_act_chain';
  if (options.distinctDesks && options.partyDesks?.some((desk) => approver.desks.includes(desk))) return 'approver_on_requesters_desk';
  return undefined;
}

/**
 * The subjects of an RFC 8693 `act` claim, outermost (the current actor) first: each nested
 * `act` is a prior actor (§4.1).
 */
export function actChainSubjects(act: unknown): string[] {
  const subjects: string[] = [];
  let current = act;
  for (let depth = 0; depth < 32 && current && typeof current === 'object'; depth++) {
    const sub = (current as { sub?: unknown }).sub;
    if (typeof sub === 'string') subjects.push(sub);
    current = (current as { act?: unknown }).act;
  }
  return subjects;
}
