import type { CheckLine } from '../federation/check.ts';
import type { DriftView } from '../federation/drift/view.ts';
import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell, pageOutcome } from './console.ts';

/**
 * A partner's page in the console (docs/console.md "Directory"): its trust profile as stored, its
 * drift status (GET /admin/partners/{id}/drift) and, when the person asks for it with the form,
 * `clearance partner check` run then (GET /admin/partners/{id}/check), rule by rule — all read
 * with the person's token. The form is offered to a token with admin:write only, as the API asks.
 */
export interface PartnerView {
  profile?: Record<string, unknown> & { id: string; issuer: string };
  drift?: DriftView;
  check?: { ok: boolean; lines: CheckLine[] };
  error?: string;
}

const shown = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

export function consolePartnerPage(base: string, session: ConsoleSession, view: PartnerView): SafeHtml {
  const p = view.profile;
  return consoleShell({
    base,
    session,
    section: 'directory',
    title: p ? `Partner ${p.id}` : 'Partner',
    body: html`<h1>Partner ${p ? html`<code>${p.id}</code>` : ''}</h1>
${pageOutcome(view)}
${
  p
    ? html`<h2>Trust profile</h2>
<dl class="status-facts">${Object.entries(p).map(([name, value]) => html`<dt>${name}</dt><dd><code>${shown(value)}</code></dd>`)}</dl>
<h2>Drift</h2>
${
  view.drift
    ? html`<dl class="status-facts">
<dt>Status</dt><dd>${view.drift.status === 'suspended' ? html`<strong class="not-verified">suspended</strong> since ${view.drift.suspended_at ?? ''} (${view.drift.suspended_reason ?? ''})` : view.drift.status}</dd>
<dt>Last successful check</dt><dd>${view.drift.last_success_at ?? '—'}</dd>
<dt>Unreachable since</dt><dd>${view.drift.unreachable_since ?? '—'}</dd>
<dt>Next check</dt><dd>${view.drift.next_check_at ?? '—'}</dd>
<dt>Baseline keys</dt><dd>${(view.drift.keys ?? []).map((k) => k.kid ?? k.thumbprint).join(', ') || '—'}</dd>
</dl>`
    : html`<p class="muted">Not available.</p>`
}
<h2>Check <span class="muted">(clearance partner check)</span></h2>
${
  // The check sends requests to the partner's servers, which the admin API allows admin:write
  // only: a reader is offered no form the API would refuse.
  session.scopes.includes('admin:write')
    ? html`<form method="post" action="${base}/console/partners/${encodeURIComponent(p.id)}/check">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<p>Fetches the partner's published metadata and keys now and checks the profile against them, rule by rule.</p>
<div class="actions"><button type="submit">${view.check ? 'Check again' : 'Run the partner check'}</button></div>
</form>`
    : html`<p class="muted">Running the check fetches the partner's published metadata and keys: it needs admin:write, an administrator's.</p>`
}
${
  view.check
    ? html`<p id="check-result">${view.check.ok ? 'Every rule passes.' : html`<strong class="not-verified">At least one rule fails.</strong>`}</p>
<table><thead><tr><th scope="col">Result</th><th scope="col">Rule</th><th scope="col">Detail</th></tr></thead>
<tbody>${view.check.lines.map((line) => html`<tr><td>${line.status === 'fail' ? html`<strong class="not-verified">fail</strong>` : line.status}</td><td>${line.rule}</td><td>${line.detail}</td></tr>`)}</tbody></table>`
    : ''
}`
    : ''
}`,
  });
}
