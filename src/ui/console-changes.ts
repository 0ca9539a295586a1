import { diffLines } from 'diff';
import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell, pageOutcome } from './console.ts';

/**
 * The console's pages of things that change by version (docs/console.md "Policies and mandates"):
 * a policy set version — its text, its diff against another version, the replay of recorded
 * decisions against it, and its activation by a second person — and a mandate — every version,
 * what changed from one to the next, and its revocation. Everything is read and done through the
 * admin API with the person's token; the forms are offered only to a token with admin:write, and
 * the API decides (an author never activates their own version).
 */

export interface PolicyVersionView {
  version: string;
  active: boolean;
  author: string;
  approver: string | null;
  change_ref: string;
  created_at: string;
  activated_at: string | null;
  text: string;
}

export interface SimulationView {
  read: number;
  replayed: number;
  flips: number;
  allow_to_deny: number;
  deny_to_allow: number;
  listed: { event: string; type: string; time: string; request: { principal?: string; action?: string; resource?: string }; was: { allow: boolean; reasons: string[]; policyVersion: string }; now: { allow: boolean; reasons: string[]; errors: string[] } }[];
}

export interface PolicyPageView {
  policy?: PolicyVersionView;
  /** The version it is compared with (the active one unless another is asked), and its text. */
  against?: { version: string; text: string };
  /** Every version, for the comparison's choice. */
  versions: string[];
  simulation?: SimulationView;
  simulationError?: string;
  /**
   * The replay not run yet, since the request did not come from the console's own link: it is a
   * read of the audit log on the person's record (audit.read), offered on a form instead, which
   * carries these fields (what the page was asked).
   */
  replayOnConfirm?: Record<string, string | undefined>;
  notice?: string;
  error?: string;
  /** The admin API asked for a new sign-in (RFC 9470 step-up): the console path to come back to after it. */
  signInAgain?: string;
}

/** Line by line, as `diff -u` shows it: what the compared version has and this one has not, and the other way. */
function textDiff(before: string, after: string): SafeHtml {
  // Both end with a newline: a last line without one would otherwise differ from itself followed by more.
  const parts = diffLines(withNewline(before), withNewline(after));
  const lines = parts.flatMap((part) => {
    const mark = part.added ? '+' : part.removed ? '-' : ' ';
    return part.value.replace(/\n$/, '').split('\n').map((line) => ({ mark, line, kind: part.added ? 'added' : part.removed ? 'removed' : 'same' }));
  });
  const changed = lines.filter((l) => l.kind !== 'same').length;
  return html`<p>${changed === 0 ? 'The texts are the same.' : `${lines.filter((l) => l.kind === 'added').length} line(s) added, ${lines.filter((l) => l.kind === 'removed').length} removed.`}</p>
<pre class="diff" aria-label="Differences, + added, - removed">${lines.map((l) => html`<span class="${l.kind}">${l.mark} ${l.line}
</span>`)}</pre>`;
}

const withNewline = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);

const decision = (allow: boolean) => (allow ? 'allow' : 'deny');

export function consolePolicyPage(base: string, session: ConsoleSession, view: PolicyPageView): SafeHtml {
  const p = view.policy;
  const mayWrite = session.scopes.includes('admin:write');
  return consoleShell({
    base,
    session,
    section: 'directory',
    title: p ? `Policy set ${p.version}` : 'Policy set',
    body: html`<h1>Policy set ${p ? html`<code>${p.version}</code>` : ''}</h1>
${pageOutcome(view)}
${view.signInAgain ? html`<p><a href="${base}/console/sign-in?fresh=1&amp;return=${encodeURIComponent(view.signInAgain)}">Sign in again</a> with your passkey, then activate within 5 minutes.</p>` : ''}
${
  p
    ? html`<dl class="status-facts">
<dt>Status</dt><dd>${p.active ? html`<strong>active</strong> since ${p.activated_at ?? ''}` : 'not active'}</dd>
<dt>Change</dt><dd>${p.change_ref}</dd>
<dt>Author</dt><dd>${p.author}</dd>
<dt>Approver</dt><dd>${p.approver ?? '—'}</dd>
<dt>Stored</dt><dd>${p.created_at}</dd>
</dl>
${
  !p.active && mayWrite
    ? html`<form method="post" action="${base}/console/policies/${encodeURIComponent(p.version)}/activate">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<p>Activating makes you its approver: you must not be its author (${p.author}). Every node evaluates it from its next decision.</p>
<div class="actions"><button type="submit">Activate ${p.version}</button></div>
</form>`
    : ''
}
<h2>What it would change</h2>
${
  view.simulation
    ? html`<p id="simulation">Replayed ${view.simulation.replayed} of the last ${view.simulation.read} recorded decisions: <strong>${view.simulation.flips} would flip</strong> (${view.simulation.allow_to_deny} allow → deny, ${view.simulation.deny_to_allow} deny → allow).</p>
${
  view.simulation.listed.length
    ? html`<table><caption class="muted">The decisions it would flip, newest first</caption>
<thead><tr><th scope="col">When</th><th scope="col">Principal</th><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Was</th><th scope="col">Would be</th></tr></thead>
<tbody>${view.simulation.listed.slice(0, 50).map(
        (f) => html`<tr><td><a href="${base}/console/audit/events/${f.event}">${f.time}</a></td><td><code>${f.request.principal ?? ''}</code></td><td><code>${f.request.action ?? ''}</code></td><td><code>${f.request.resource ?? ''}</code></td><td>${decision(f.was.allow)} (${f.was.reasons.join(', ') || '—'} @ ${f.was.policyVersion})</td><td>${decision(f.now.allow)} (${[...f.now.reasons, ...f.now.errors].join(', ') || 'no policy permits'})</td></tr>`,
      )}</tbody></table>`
    : ''
}`
    : view.replayOnConfirm
      ? replayForm(base, session, p.version, view.replayOnConfirm)
      : html`<p class="muted">${view.simulationError ?? 'Not simulated.'}</p>`
}
<h2>Compared with ${view.against ? html`<code>${view.against.version}</code>` : 'another version'}</h2>
${
  view.versions.some((v) => v !== p.version)
    ? html`<form method="get" action="${base}/console/policies/${encodeURIComponent(p.version)}" class="search" aria-label="Compare with another version">
<div><label for="f-against">Compare with</label><select id="f-against" name="against">${view.versions.filter((v) => v !== p.version).map((v) => html`<option value="${v}"${v === view.against?.version ? html` selected` : ''}>${v}</option>`)}</select></div>
<div class="actions"><button type="submit">Compare</button></div>
</form>`
    : ''
}
${view.against ? textDiff(view.against.text, p.text) : html`<p class="muted">No other version to compare with.</p>`}
<h2>Its text</h2>
<pre class="event">${p.text}</pre>`
    : ''
}`,
  });
}

/**
 * The form that replays the recorded decisions against a version (src/endpoints/console
 * `pageRecordingReads`): the console's CSRF token, which no other site has, so only the person's
 * click puts that read on their record.
 */
function replayForm(base: string, session: ConsoleSession, version: string, fields: Record<string, string | undefined>): SafeHtml {
  return html`<form method="post" action="${base}/console/policies/${encodeURIComponent(version)}">
<input type="hidden" name="csrf_token" value="${session.csrf}">
${Object.entries(fields).map(([name, value]) => (value === undefined ? '' : html`<input type="hidden" name="${name}" value="${value}">`))}
<p>Not replayed yet: your browser did not say that this link was followed from the console. Replaying the recorded decisions puts a read of the audit log on your record (<code>audit.read</code>).</p>
<div class="actions"><button type="submit">Show what it would change</button></div>
</form>`;
}

export type MandateVersionView = Record<string, unknown> & { id: string; version: number; status: string };

export interface MandatePageView {
  mandate?: MandateVersionView & { history: MandateVersionView[] };
  notice?: string;
  error?: string;
}

/** The members of a version that are its terms and state, in the order a reader wants them. */
const comparedMembers = ['status', 'grantor', 'grantee', 'scopes', 'constraints', 'legal_basis', 'effective_from', 'effective_to', 'accepted_by', 'accepted_at', 'revoked_at', 'revoke_reason'];

const shown = (value: unknown) => (value === undefined || value === null ? '—' : typeof value === 'string' ? value : JSON.stringify(value));

/** What one version changed from the one before it, member by member. */
function versionChanges(before: MandateVersionView, after: MandateVersionView): SafeHtml {
  const changed = comparedMembers.filter((m) => JSON.stringify(before[m] ?? null) !== JSON.stringify(after[m] ?? null));
  return html`<section aria-labelledby="v-${after.version}"><h3 id="v-${after.version}">Version ${before.version} → ${after.version}</h3>
${
  changed.length === 0
    ? html`<p class="muted">No change of terms.</p>`
    : html`<table><thead><tr><th scope="col">Member</th><th scope="col">Version ${before.version}</th><th scope="col">Version ${after.version}</th></tr></thead>
<tbody>${changed.map((m) => html`<tr><td>${m}</td><td><code>${shown(before[m])}</code></td><td><code>${shown(after[m])}</code></td></tr>`)}</tbody></table>`
}</section>`;
}

export function consoleMandatePage(base: string, session: ConsoleSession, view: MandatePageView): SafeHtml {
  const m = view.mandate;
  const live = m && (m.status === 'active' || m.status === 'proposed');
  return consoleShell({
    base,
    session,
    section: 'directory',
    title: m ? `Mandate ${m.id}` : 'Mandate',
    body: html`<h1>Mandate ${m ? html`<code>${m.id}</code>` : ''}</h1>
${pageOutcome(view)}
${
  m
    ? html`<p>Version ${m.version}, <strong>${m.status}</strong>.</p>
<table><caption class="muted">Every version, oldest first</caption>
<thead><tr><th scope="col">Version</th><th scope="col">Status</th><th scope="col">Scopes</th><th scope="col">Effective</th><th scope="col">Created</th></tr></thead>
<tbody>${m.history.map((v) => html`<tr><td>${v.version}</td><td>${v.status}</td><td><code>${shown(v.scopes)}</code></td><td>${shown(v.effective_from)} – ${shown(v.effective_to)}</td><td>${shown(v.created_at)} by <code>${shown(v.created_by)}</code></td></tr>`)}</tbody></table>
<h2>What changed</h2>
${m.history.length < 2 ? html`<p class="muted">One version only.</p>` : m.history.slice(1).map((v, i) => versionChanges(m.history[i]!, v))}
${
  live && session.scopes.includes('admin:write')
    ? html`<h2>Revoke</h2>
<form method="post" action="${base}/console/mandates/${encodeURIComponent(m.id)}/revoke">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<p>Every token that names this mandate is inactive from the moment it is revoked, on every node.</p>
<label for="f-reason">Reason</label>
<textarea id="f-reason" name="reason" rows="2" maxlength="500" required></textarea>
<div class="actions"><button type="submit">Revoke mandate ${m.id}</button></div>
</form>`
    : ''
}`
    : ''
}`,
  });
}
