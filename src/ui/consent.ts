import type { ConsentRequest } from '../authorization/contract.ts';
import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export interface ConsentView {
  base: string;
  /** Where the form posts (`<base>/interaction/<id>/consent`). */
  action: string;
  csrfToken: string;
  consent: ConsentRequest;
  /** Who is signed in (their name, else username), so a shared machine shows whose consent this is. */
  signedInAs: string;
  /** With an approval (consent.approval): where the page asks for the passkey ceremony's options. */
  approvalOptions?: string;
  /** Why the last approval failed, in plain words. */
  error?: string;
}

/**
 * The consent page: which application asks, for whom, what it may do (the protocol side's
 * plain-language `lines`, one per scope and per authorization_details entry), at which services,
 * and two buttons, Approve and Deny.
 */
export function consentPage(view: ConsentView): SafeHtml {
  const { consent } = view;
  const lines = consent.lines.length > 0 ? consent.lines : [`Confirm to ${consent.clientName} who you are.`];
  const services = consent.resources.map((r) => r.name || r.identifier);
  return layout({
    title: `Allow ${consent.clientName}?`,
    base: view.base,
    ...(consent.approval && view.approvalOptions ? { passkeys: true } : {}),
    body: html`<h1>Allow ${consent.clientName} to act for you?</h1>
<p>You are signed in as <strong>${view.signedInAs}</strong>.</p>
<p id="consent-summary">${consent.clientName} is asking to:</p>
<ul class="requests" aria-labelledby="consent-summary">
${lines.map((line) => html`<li>${line}</li>\n`)}</ul>
${services.length > 0 ? html`<p>At: ${services.join(', ')}</p>` : ''}
<p class="muted">Application identifier: ${consent.clientId}</p>
<p class="muted">You can revoke this later on <a href="${view.base}/account">your account page</a>.</p>
${consent.approval && view.approvalOptions ? approvalForms(view, consent.approval) : plainForm(view)}`,
  });
}

function plainForm(view: ConsentView): SafeHtml {
  return html`<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<div class="actions">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>`;
}

/**
 * What-you-see-is-what-you-sign: the entries the passkey will sign over, each in plain words, and
 * approving only with the passkey (the form is shown when the browser can use one; without
 * JavaScript only Deny is there). Denying needs no passkey.
 */
function approvalForms(view: ConsentView, approval: NonNullable<ConsentRequest['approval']>): SafeHtml {
  return html`<section class="approval" aria-labelledby="approval-heading">
<h2 id="approval-heading">Approve with your passkey</h2>
<p id="approval-summary">Your passkey will sign exactly this, and nothing else:</p>
<ol class="requests" aria-labelledby="approval-summary">
${approval.lines.map((line) => html`<li>${line}</li>\n`)}</ol>
<div data-passkey-section hidden>
<div id="approval-error" class="error" role="alert" data-passkey-error>${view.error ?? ''}</div>
<form method="post" action="${view.action}" data-passkey="approve" data-options="${view.approvalOptions!}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<input type="hidden" name="decision" value="approve">
<input type="hidden" name="credential" value="">
<div class="actions"><button type="submit">Approve with passkey</button></div>
</form>
</div>
<noscript><p>Approving needs a passkey, which needs JavaScript in this browser.</p></noscript>
</section>
<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<div class="actions"><button type="submit" name="decision" value="deny" class="secondary">Deny</button></div>
</form>`;
}
