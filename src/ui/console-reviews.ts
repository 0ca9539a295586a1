import type { ReviewView } from '../approvals/break-glass/reviews.ts';
import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell, iso, pageOutcome } from './console.ts';

/**
 * Compliance's reviews in the console (docs/console.md "Reviews"): every break-glass activation
 * opens a review that only a compliance officer closes (docs/recovery.md "Break-glass"). The list is
 * GET /admin/break-glass/reviews; closing is POST /admin/break-glass/reviews/{id}/close with the
 * person's token (scope `reviews:close`), whose rules (compliance, phishing-resistant, neither the
 * requester nor an approver of the activation) are the API's.
 */

export interface ReviewsView {
  reviews?: ReviewView[];
  /** Whether the person's token may close reviews (its scopes): without it, no form is offered. */
  mayClose: boolean;
  notice?: string;
  error?: string;
}

export function consoleReviewsPage(base: string, session: ConsoleSession, view: ReviewsView): SafeHtml {
  const open = (view.reviews ?? []).filter((r) => r.closed_at === null);
  const closed = (view.reviews ?? []).filter((r) => r.closed_at !== null);
  return consoleShell({
    base,
    session,
    section: 'reviews',
    title: 'Reviews',
    body: html`<h1>Break-glass reviews</h1>
${pageOutcome(view)}
${
  view.reviews === undefined
    ? ''
    : html`<h2>Open <span class="muted">(${open.length})</span></h2>
${
  open.length === 0
    ? html`<p>No review is open.</p>`
    : open.map(
        (review) => html`<section class="grant" aria-labelledby="r-${review.activation_id}">
<h3 id="r-${review.activation_id}">Account <code>${review.account}</code>, activation <code>${review.activation_id}</code></h3>
<p class="muted">Opened ${iso(review.opened_at)}. Its events: <a href="${base}/console/txn?txn=${encodeURIComponent(review.activation_id)}">the activation's record</a>.</p>
${
  view.mayClose
    ? html`<form method="post" action="${base}/console/reviews/${review.activation_id}/close">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<label for="n-${review.activation_id}">What you reviewed</label>
<textarea id="n-${review.activation_id}" name="note" rows="2" maxlength="2000" required></textarea>
<div class="actions"><button type="submit">Close the review</button></div>
</form>`
    : html`<p class="muted">Only compliance closes reviews.</p>`
}
</section>`,
      )
}
<h2>Closed <span class="muted">(${closed.length})</span></h2>
${
  closed.length === 0
    ? html`<p class="muted">None.</p>`
    : html`<table>
<thead><tr><th scope="col">Account</th><th scope="col">Activation</th><th scope="col">Opened</th><th scope="col">Closed</th><th scope="col">By</th><th scope="col">Note</th></tr></thead>
<tbody>${closed.map((r) => html`<tr><td><code>${r.account}</code></td><td><code>${r.activation_id}</code></td><td>${iso(r.opened_at)}</td><td>${iso(r.closed_at!)}</td><td><code>${r.closed_by ?? ''}</code></td><td>${r.note ?? ''}</td></tr>`)}</tbody>
</table>`
}`
}`,
  });
}
