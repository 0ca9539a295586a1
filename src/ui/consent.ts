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
    body: html`<h1>Allow ${consent.clientName} to act for you?</h1>
<p>You are signed in as <strong>${view.signedInAs}</strong>.</p>
<p id="consent-summary">${consent.clientName} is asking to:</p>
<ul class="requests" aria-labelledby="consent-summary">
${lines.map((line) => html`<li>${line}</li>\n`)}</ul>
${services.length > 0 ? html`<p>At: ${services.join(', ')}</p>` : ''}
<p class="muted">Application identifier: ${consent.clientId}</p>
<p class="muted">You can revoke this later on <a href="${view.base}/account">your account page</a>.</p>
<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<div class="actions">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>`,
  });
}
