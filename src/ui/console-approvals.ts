import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell, iso, pageOutcome } from './console.ts';

/**
 * The approver's page of the console (docs/console.md "Approvals"): the requests waiting for the
 * person, as GET /admin/approvals answers with their token, each with what it asks in full and a
 * form to approve or deny it (a denial needs its reason). The decision is the admin API's
 * (POST /admin/approvals/{id}/decision): independence, eligibility and the freshness of the sign-in
 * are its rules, and its refusal is shown as it words it.
 */

/** A pending request as GET /admin/approvals lists it. */
export interface ListedApproval {
  id: string;
  kind: string;
  title: string;
  lines: { label: string; value: string }[];
  requester: { type: string; id: string; name: string };
  subject: { id: string; name: string };
  client?: { id: string; name: string };
  binding_message?: string;
  authorization_details_text?: string[];
  approvals: number;
  required_approvals: number;
  created_at: number;
  expires_at: number;
  role?: string;
}

export interface ApprovalsView {
  approvals?: ListedApproval[];
  /** After a decision: what it did. */
  notice?: string;
  /** The API's refusal (of the list or of a decision), in its words. */
  error?: string;
  /** The decision was refused for an old sign-in: offer a fresh one. */
  signInAgain?: boolean;
}

function approvalCard(base: string, session: ConsoleSession, approval: ListedApproval): SafeHtml {
  const id = `a-${approval.id}`;
  return html`<section class="grant" aria-labelledby="${id}">
<h2 id="${id}">${approval.title}</h2>
<dl class="request-facts">
<dt>Asked by</dt><dd>${approval.requester.name} <span class="muted">(${approval.requester.type} <code>${approval.requester.id}</code>)</span></dd>
<dt>For</dt><dd>${approval.subject.name} <span class="muted">(<code>${approval.subject.id}</code>)</span></dd>
${approval.client ? html`<dt>Client</dt><dd>${approval.client.name} <span class="muted">(<code>${approval.client.id}</code>)</span></dd>` : ''}
${approval.lines.map((line) => html`<dt>${line.label}</dt><dd>${line.value}</dd>`)}
${approval.binding_message ? html`<dt>Binding message</dt><dd>${approval.binding_message}</dd>` : ''}
${(approval.authorization_details_text ?? []).map((line) => html`<dt>Authorization</dt><dd>${line}</dd>`)}
<dt>Approvals</dt><dd>${approval.approvals} of ${approval.required_approvals}${approval.role ? html` · you decide as <strong>${approval.role}</strong>` : ''}</dd>
<dt>Asked</dt><dd>${iso(approval.created_at)}, expires ${iso(approval.expires_at)}</dd>
</dl>
<form method="post" action="${base}/console/approvals/${approval.id}/decision">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<label for="${id}-reason">Reason <span class="muted">(needed to deny)</span></label>
<textarea id="${id}-reason" name="reason" rows="2" maxlength="500"></textarea>
<div class="actions"><button type="submit" name="decision" value="approve">Approve</button><button type="submit" name="decision" value="deny" class="secondary">Deny</button></div>
</form>
</section>`;
}

export function consoleApprovalsPage(base: string, session: ConsoleSession, view: ApprovalsView): SafeHtml {
  return consoleShell({
    base,
    session,
    section: 'approvals',
    title: 'Approvals',
    body: html`<h1>Approvals waiting for you</h1>
${pageOutcome(view)}
${view.signInAgain ? html`<p><a href="${base}/console/sign-in?fresh=1&amp;return=${encodeURIComponent('/console/approvals')}">Sign in again</a> to decide.</p>` : ''}
${
  view.approvals === undefined
    ? ''
    : view.approvals.length === 0
      ? html`<p>Nothing waits for your decision.</p>`
      : html`<p class="muted">Each request as the admin API shows it to you; your decision is made with your console sign-in, which must be of the last 5 minutes.</p>
${view.approvals.map((approval) => approvalCard(base, session, approval))}`
}`,
  });
}
