import type { ApprovalView } from '../approvals/deciders.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';
import { when } from './time.ts';

/** A request on the approvals page, with what the person may do about it. */
export interface ApprovalItem {
  view: ApprovalView;
  /** 'subject': the request is about them (they approve for themselves); 'approver': a second person. */
  role: 'subject' | 'approver';
}

export interface ApprovalsListView {
  base: string;
  signedInAs: string;
  items: ApprovalItem[];
}

/**
 * The approvals page (/account/approvals): the pending requests the person may decide, each in
 * its kind's plain words with who asked, for whom, and until when, linking to its own page. No
 * form and no script: deciding happens on a request's page.
 */
export function approvalsListPage(view: ApprovalsListView): SafeHtml {
  return layout({
    title: 'Approvals',
    base: view.base,
    body: html`<h1>Approvals</h1>
<p>You are signed in as <strong>${view.signedInAs}</strong>.</p>
${
  view.items.length === 0
    ? html`<p id="no-approvals">Nothing is waiting for your approval.</p>`
    : html`<p id="approvals-summary">Waiting for your decision:</p>
<ul class="requests" aria-labelledby="approvals-summary">
${view.items.map(
  ({ view: v, role }) => html`<li class="grant"><h2><a href="${view.base}/account/approvals/${v.id}">${v.description.title}</a></h2>
<p>${role === 'subject' ? 'About you: ' : ''}asked by ${v.requester.name} for ${v.subject.name}${v.bindingMessage !== undefined ? html` — “${v.bindingMessage}”` : ''}.</p>
<p class="muted">Until ${when(v.expiresAt)} · approvals ${v.approvals} of ${v.requiredApprovals}${v.subjectApproval === 'pending' ? ' (and the person’s own)' : ''}</p></li>\n`,
)}</ul>`
}
<p><a href="${view.base}/account">Your account</a></p>`,
  });
}

export interface ApprovalPageView {
  base: string;
  signedInAs: string;
  csrfToken: string;
  item: ApprovalItem;
  /** Where the approve form posts, and where its script asks for the passkey ceremony's options. */
  action: string;
  optionsUrl: string;
  /** The person has a passkey to approve with. */
  canApprove: boolean;
  /** Set when this session cannot deny (its level is below the request's): what to do instead. */
  denyLocked?: string;
  error?: string;
}

/**
 * One request's page: what it is in plain words and exactly (the content whose digest the passkey
 * signs), who asked, for whom, through which application, the binding message and the
 * authorization_details, the expiry, the approvals so far; then Approve with a passkey (shown when
 * the browser can use one) and Deny with a reason (the session suffices: a denial can only stop
 * something).
 */
export function approvalPage(view: ApprovalPageView): SafeHtml {
  const v = view.item.view;
  const csrf = html`<input type="hidden" name="${csrfField}" value="${view.csrfToken}">`;
  return layout({
    title: v.description.title,
    base: view.base,
    passkeys: view.canApprove,
    body: html`<h1>${v.description.title}</h1>
<p>You are signed in as <strong>${view.signedInAs}</strong>.</p>
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<dl class="request-facts">
${v.description.lines.map((line) => html`<dt>${line.label}</dt><dd>${line.value}</dd>\n`)}<dt>Asked by</dt><dd>${v.requester.name}${v.requester.type === 'client' ? ' (application)' : ''}</dd>
<dt>For</dt><dd>${v.subject.name}${view.item.role === 'subject' ? ' (you)' : ''}</dd>
${v.client ? html`<dt>Application</dt><dd>${v.client.name} (${v.client.id})</dd>\n` : ''}${v.bindingMessage !== undefined ? html`<dt>Binding message</dt><dd id="binding-message">${v.bindingMessage}</dd>\n` : ''}<dt>Expires</dt><dd>${when(v.expiresAt)}</dd>
<dt>Approvals</dt><dd>${v.approvals} of ${v.requiredApprovals}${v.subjectApproval === 'pending' ? ', and the person’s own (pending)' : v.subjectApproval === 'given' ? ', and the person’s own (given)' : ''}</dd>
</dl>
${
  v.authorizationDetails && v.authorizationDetails.length > 0
    ? html`<p id="details-summary">What is asked:</p>
<ol class="requests" aria-labelledby="details-summary">
${v.authorizationDetails.map((line) => html`<li>${line}</li>\n`)}</ol>`
    : ''
}
<details class="exact"><summary>Exactly what your passkey signs</summary>
<pre>${canonicalize(v.content)}</pre>
<p class="muted">Digest (SHA-256): ${v.digest}</p>
</details>
${
  view.canApprove
    ? html`<section class="approval" aria-labelledby="approve-heading">
<h2 id="approve-heading">Approve with your passkey</h2>
<div data-passkey-section hidden>
<div id="approval-error" class="error" role="alert" data-passkey-error></div>
<form method="post" action="${view.action}" data-passkey="approve" data-options="${view.optionsUrl}">
${csrf}
<input type="hidden" name="decision" value="approve">
<input type="hidden" name="credential" value="">
<div class="actions"><button type="submit">Approve with passkey</button></div>
</form>
</div>
<noscript><p>Approving needs a passkey, which needs JavaScript in this browser.</p></noscript>
</section>`
    : html`<p>Approving needs one of your passkeys, and you have none. Add one on <a href="${view.base}/account">your account page</a>.</p>`
}
<section class="decline" aria-labelledby="deny-heading">
<h2 id="deny-heading">Deny</h2>
${
  view.denyLocked
    ? html`<p>${view.denyLocked}</p>`
    : html`<form method="post" action="${view.action}">
${csrf}
<input type="hidden" name="decision" value="deny">
<label for="reason">Why you deny it</label>
<textarea id="reason" name="reason" required maxlength="500" rows="3"></textarea>
<div class="actions"><button type="submit" class="secondary">Deny</button></div>
</form>`
}
</section>
<p><a href="${view.base}/account/approvals">All approvals</a></p>`,
  });
}
