import type { StoredAuditEvent } from '../audit/events.ts';
import type { PersonalView } from '../audit/personal-data.ts';
import type { SignedCheckpoint } from '../audit/proofs.ts';
import type { Hop } from '../console/chain.ts';
import type { ProofCheck } from '../console/proof-check.ts';
import { consoleRoles, type ConsoleRole } from '../console/roles.ts';
import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

/**
 * The console's pages (src/endpoints/console, docs/console.md): server-rendered, no script, the
 * one stylesheet; the chain of a trade is an inline SVG drawn here. Every value is escaped by the
 * `html` template; nothing on these pages comes from anywhere but the admin API's answers.
 */

type Section = 'home' | 'dashboard' | 'approvals' | 'reviews' | 'audit' | 'txn' | 'directory';

interface Shell {
  base: string;
  title: string;
  session: ConsoleSession;
  section: Section;
  body: SafeHtml;
}

/** A time on the console's pages: ISO 8601 UTC, without the milliseconds when there are none. */
export const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

/** Every signed-in console page: the navigation (what the person's scopes can read), sign-out, the page. */
export function consoleShell(view: Shell): SafeHtml {
  const link = (section: Section, href: string, label: string) =>
    html`<a href="${view.base}/console${href}"${view.section === section ? html` aria-current="page"` : ''}>${label}</a>`;
  const reads = view.session.scopes.includes('audit:read');
  return layout({
    title: view.title,
    base: view.base,
    wide: true,
    body: html`<nav class="console-nav" aria-label="Console">
${link('home', '', 'Console')}
${reads ? link('dashboard', '/dashboard', 'Dashboard') : ''}
${view.session.scopes.includes('approvals:decide') ? link('approvals', '/approvals', 'Approvals') : ''}
${view.session.scopes.includes('reviews:close') ? link('reviews', '/reviews', 'Reviews') : ''}
${reads ? link('audit', '/audit', 'Audit log') : ''}
${reads ? link('txn', '/txn', 'Transactions') : ''}
${view.session.scopes.includes('admin:read') ? link('directory', '/directory', 'Directory') : ''}
<form method="post" action="${view.base}/console/sign-out"><input type="hidden" name="csrf_token" value="${view.session.csrf}"><button type="submit" class="secondary">Sign out ${view.session.username}</button></form>
</nav>
${view.body}`,
  });
}

export function consoleSignedOutPage(base: string, message?: string): SafeHtml {
  return layout({
    title: 'Console',
    base,
    body: html`<h1>Clearance console</h1>
${message ? html`<p class="notice" role="status">${message}</p>` : ''}
<p>For administrators, compliance officers, approvers and auditors. You sign in with your Clearance account, with the strongest factor your role asks for.</p>
<p><a href="${base}/console/sign-in">Sign in to the console</a></p>`,
  });
}

export function consoleRefusedPage(base: string, title: string, message: string): SafeHtml {
  return layout({
    title,
    base,
    body: html`<h1>${title}</h1>
<p>${message}</p>
<p><a href="${base}/console">Back to the console</a></p>`,
  });
}

/** A GET of the console's that would put something on the person's record, confirmed on a form of the console's own. */
export interface Confirmation {
  title: string;
  /** What doing it puts on the person's record, in words. */
  act: string;
  /** Where the form posts (the act's POST route). */
  action: string;
  /** What the GET asked, carried by the form. */
  fields: Record<string, string | undefined>;
  button: string;
  /** The console section the asking page belongs to (the audit log's, unless said). */
  section?: Section;
}

/**
 * The confirmation of an act asked by a GET whose browser sent no Fetch Metadata, or of a read on
 * the person's record (of people, of the audit log) asked by another site's link too
 * (src/endpoints/console `confirmFirst`, `pageRecordingReads`): the form carries the console's
 * CSRF token, which no other site has, so only the person's click on the console's own page does it.
 */
export function consoleConfirmPage(base: string, session: ConsoleSession, view: Confirmation): SafeHtml {
  return consoleShell({
    base,
    session,
    section: view.section ?? 'audit',
    title: view.title,
    body: html`<h1>${view.title}</h1>
<p>Your browser did not say that this link was followed from the console, so nothing was done yet: a link on another site must not act in your name. ${view.act}</p>
<form method="post" action="${view.action}">
<input type="hidden" name="csrf_token" value="${session.csrf}">
${Object.entries(view.fields).map(([name, value]) => (value === undefined ? '' : html`<input type="hidden" name="${name}" value="${value}">`))}
<div class="actions"><button type="submit">${view.button}</button></div>
</form>
<p><a href="${base}/console">Back to the console</a></p>`,
  });
}

/** What a console page says happened (a notice, read out politely) and what was refused (an alert). */
export function pageOutcome(view: { notice?: string | undefined; error?: string | undefined }): SafeHtml {
  return html`${view.notice ? html`<p class="notice" role="status">${view.notice}</p>` : ''}
${view.error ? html`<p class="error" role="alert">${view.error}</p>` : ''}`;
}

export function consoleHomePage(base: string, session: ConsoleSession): SafeHtml {
  return consoleShell({
    base,
    session,
    section: 'home',
    title: 'Console',
    body: html`<h1>Console</h1>
<p>Signed in as <strong>${session.username}</strong> at level <code>${session.acr}</code>, until ${iso(session.expiresAt)}.</p>
<h2>Your roles</h2>
<ul>${session.roles.map((role: ConsoleRole) => html`<li><strong>${role}</strong>: ${consoleRoles[role].description}</li>`)}</ul>
<p class="muted">What the console shows and does goes through the admin API with your token, whose scopes are <code>${session.scopes.join(' ')}</code>.</p>`,
  });
}

export interface AuditFilters {
  txn?: string;
  subject?: string;
  client?: string;
  type?: string;
  decision?: string;
  since?: string;
  until?: string;
}

export interface AuditView {
  filters: AuditFilters;
  eventTypes: readonly string[];
  events: { leafIndex: number | null; event: StoredAuditEvent }[];
  next?: string;
  checkpoint?: SignedCheckpoint;
  key?: { key_id: string };
  /** The last `clearance audit verify` (GET /admin/audit/status), null when the log was never verified. */
  lastVerify?: { time: string; by: string | null; ok: boolean; tree_size: number | null; event: string } | null;
  error?: string;
}

export function consoleAuditPage(base: string, session: ConsoleSession, view: AuditView): SafeHtml {
  const field = (name: keyof AuditFilters, label: string, hint?: string) =>
    html`<div><label for="f-${name}">${label}</label><input type="text" id="f-${name}" name="${name}" value="${view.filters[name] ?? ''}"${hint ? html` placeholder="${hint}"` : ''}></div>`;
  const query = new URLSearchParams(Object.entries(view.filters).filter((entry): entry is [string, string] => Boolean(entry[1])));
  return consoleShell({
    base,
    session,
    section: 'audit',
    title: 'Audit log',
    body: html`<h1>Audit log</h1>
<h2>Log status</h2>
<dl class="status-facts">
<dt>Latest checkpoint</dt><dd>${view.checkpoint ? html`tree size ${view.checkpoint.treeSize}, signed ${iso(view.checkpoint.time)}` : 'none yet'}</dd>
<dt>Root hash</dt><dd class="mono">${view.checkpoint?.rootHash ?? '—'}</dd>
<dt>Audit key fingerprint</dt><dd class="mono">${view.key?.key_id ?? '—'}</dd>
<dt>Last full verification</dt><dd id="last-verify">${
      view.lastVerify === undefined
        ? '—'
        : view.lastVerify === null
          ? html`never (<code>clearance audit verify</code>)`
          : html`${view.lastVerify.ok ? html`<span class="verified">✓ intact</span>` : html`<span class="not-verified">✗ FAILED</span>`}, tree size ${view.lastVerify.tree_size ?? '?'}, <a href="${base}/console/audit/events/${view.lastVerify.event}">${view.lastVerify.time}</a>${view.lastVerify.by ? html` by <code>${view.lastVerify.by}</code>` : ''}`
    }</dd>
</dl>
<form method="get" action="${base}/console/audit" class="search" role="search" aria-label="Search the audit log">
${field('txn', 'Transaction (txn)')}
${field('subject', 'Subject')}
${field('client', 'Client')}
<div><label for="f-type">Event type</label><select id="f-type" name="type"><option value="">any</option>${view.eventTypes.map((type) => html`<option${view.filters.type === type ? html` selected` : ''}>${type}</option>`)}</select></div>
<div><label for="f-decision">Decision</label><select id="f-decision" name="decision"><option value="">any</option>${['allow', 'deny'].map((d) => html`<option${view.filters.decision === d ? html` selected` : ''}>${d}</option>`)}</select></div>
${field('since', 'Since', '2026-11-24T09:00Z')}
${field('until', 'Until', '2026-11-24T18:00Z')}
<div class="actions"><button type="submit">Search</button></div>
</form>
${pageOutcome(view)}
${
  view.events.length === 0
    ? html`<p>No events match.</p>`
    : html`<table>
<caption class="muted">${view.events.length} event(s), oldest first</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Client</th><th scope="col">Subject</th><th scope="col">Txn</th><th scope="col">Leaf</th></tr></thead>
<tbody>${view.events.map(
        ({ leafIndex, event }) =>
          html`<tr><td><a href="${base}/console/audit/events/${event.id}">${iso(event.time)}</a></td><td>${event.type}</td><td><code>${event.client ?? ''}</code></td><td><code>${event.subject ?? ''}</code></td><td>${event.txn ? html`<a href="${base}/console/txn?txn=${encodeURIComponent(event.txn)}"><code>${event.txn}</code></a>` : ''}</td><td>${leafIndex ?? 'not sealed yet'}</td></tr>`,
      )}</tbody>
</table>`
}
${view.next ? html`<p><a href="${base}/console/audit?${query.toString()}${query.size ? '&' : ''}after=${encodeURIComponent(view.next)}">Next events</a></p>` : ''}
${view.filters.txn ? html`<p><a href="${base}/console/txn?txn=${encodeURIComponent(view.filters.txn)}">Delegation view of this transaction</a></p>` : ''}
${view.events.length > 0 && (view.filters.txn || view.filters.subject || view.filters.client || view.filters.since) ? html`<p>${bundleLink(base, query, 'Download the evidence bundle of this selection')} <span class="muted">(its sealed events, signed)</span></p>` : ''}`,
  });
}

/**
 * The link to an evidence bundle. No `download` attribute: the bundle's Content-Disposition makes
 * it a download already, and a browser without Fetch Metadata is answered a confirmation page
 * (src/endpoints/console), which it must show rather than save as the file.
 */
function bundleLink(base: string, query: URLSearchParams, label: string): SafeHtml {
  return html`<a href="${base}/console/bundle?${query.toString()}">${label}</a>`;
}

export function proofLine(check: ProofCheck | undefined): SafeHtml {
  if (!check) return html`<span class="muted">not sealed yet</span>`;
  if (check.verified) return html`<span class="verified">✓ verified</span> <span class="muted">leaf ${check.leafIndex} in the tree of ${check.treeSize}</span>`;
  return html`<span class="not-verified">✗ not verified: ${check.reason}</span>`;
}

export function consoleEventPage(base: string, session: ConsoleSession, view: { event: StoredAuditEvent; canonical: string; check: ProofCheck | undefined; unsealedReason?: string; personal?: PersonalView }): SafeHtml {
  const { event, check } = view;
  return consoleShell({
    base,
    session,
    section: 'audit',
    title: `Audit event ${event.id}`,
    body: html`<h1>Audit event</h1>
<dl class="status-facts">
<dt>Type</dt><dd>${event.type}</dd>
<dt>Time</dt><dd>${iso(event.time)}</dd>
<dt>Id</dt><dd class="mono">${event.id}</dd>
${event.txn ? html`<dt>Transaction</dt><dd><a href="${base}/console/txn?txn=${encodeURIComponent(event.txn)}"><code>${event.txn}</code></a></dd>` : ''}
<dt>Inclusion proof</dt><dd id="proof">${check ? proofLine(check) : html`<span class="muted">${view.unsealedReason ?? 'not sealed yet'}</span>`}</dd>
${check?.verified ? html`<dt>Checkpoint</dt><dd>tree size ${check.treeSize}, root <code>${check.rootHash}</code>, signed ${iso(check.checkpointTime)} by audit key <code>${check.keyId}</code></dd>` : ''}
</dl>
${personalSection(base, session, event.id, view.personal)}
<h2>The event as logged</h2>
<p class="muted">The exact bytes of the Merkle leaf (RFC 8785 canonical JSON).</p>
<pre class="event">${view.canonical}</pre>`,
  });
}

/**
 * The event's personal fields (docs/privacy.md): revealed, withheld (with a link to reveal them for
 * the roles that read personal data; the API checks the role and the legal entity, and records the
 * read; an event of another firm stays withheld, said so), or erased.
 */
function personalSection(base: string, session: ConsoleSession, id: string, personal: PersonalView | undefined): SafeHtml | string {
  if (!personal) return '';
  const mayReveal = session.roles.some((role) => role === 'compliance' || role === 'auditor');
  const body =
    personal.status === 'revealed'
      ? html`<dl class="status-facts" id="personal">${Object.entries(personal.fields).map(([name, value]) => html`<dt>${name}</dt><dd><code>${typeof value === 'string' ? value : JSON.stringify(value)}</code></dd>`)}</dl>
<p class="muted">Revealed to you; this read is on the record (<code>audit.read</code>).</p>`
      : personal.status === 'erased'
        ? html`<p id="personal">Erased ${iso(personal.erased_at)}: ${personal.fields.join(', ')}. The subject’s key was destroyed; the event still verifies.</p>`
        : personal.reason === 'outside_scope'
          ? html`<p id="personal">Withheld: ${personal.fields.join(', ')}. Not an event of your legal entities: you reveal the personal data of your own firm’s events only.</p>`
          : html`<p id="personal">Withheld: ${personal.fields.join(', ')}.${mayReveal ? html` <a href="${base}/console/audit/events/${id}?reveal=personal">Reveal personal data</a> <span class="muted">(recorded)</span>` : ''}</p>`;
  return html`<h2>Personal data</h2>
${body}`;
}

const boxWidth = 640;
const boxHeight = 114;
const gap = 36;

function hopTitle(hop: Hop): string {
  switch (hop.kind) {
    case 'issued':
      return `Token issued to ${hop.client ?? '?'}`;
    case 'exchanged':
      return `${hop.client ?? '?'} exchanged a token`;
    case 'refused':
      return `Refused: ${hop.type}${hop.client ? ` (${hop.client})` : ''}`;
    case 'approval':
      return `${hop.type}${hop.client ? ` (${hop.client})` : ''}`;
    case 'evidence':
      return `Evidence recorded${hop.client ? ` by ${hop.client}` : ''}`;
    default:
      return hop.type;
  }
}

function hopLines(hop: Hop): string[] {
  const lines: string[] = [];
  if (hop.firm) lines.push(`firm ${hop.firm}`);
  const who = [hop.subject && `for ${hop.subject}`, hop.actChain.length ? `acting: ${hop.actChain.join(' ← ')}` : undefined, hop.agent && `agent ${hop.agent}`].filter(Boolean);
  if (who.length) lines.push(who.join(' · '));
  const what = [hop.audience && `audience ${hop.audience}`, hop.mandate && `mandate ${hop.mandate.id} v${hop.mandate.v}`].filter(Boolean);
  if (what.length) lines.push(what.join(' · '));
  const why = [hop.policyVersion && `policy ${hop.policyVersion}`, hop.refusal, hop.approvals.length ? `approvals ${hop.approvals.join(', ')}` : undefined].filter(Boolean);
  if (why.length) lines.push(why.join(' · '));
  return lines;
}

/** Keeps a line inside its box: long identifiers are cut with an ellipsis (the table has them whole). */
const fit = (line: string, max = 88) => (line.length > max ? `${line.slice(0, max - 1)}…` : line);

/** The chain as a picture: one box per hop, oldest at the top, refusals dashed in place. */
export function chainSvg(hops: readonly Hop[], checks: ReadonlyMap<string, ProofCheck>): SafeHtml {
  const height = hops.length * (boxHeight + gap) - gap + 2;
  return html`<svg class="chain" viewBox="0 0 ${boxWidth + 2} ${Math.max(height, 10)}" role="img" aria-labelledby="chain-title">
<title id="chain-title">The delegation chain: ${hops.map((hop) => hopTitle(hop)).join(', then ')}</title>
${hops.map((hop, i) => {
  const y = i * (boxHeight + gap) + 1;
  const check = checks.get(hop.eventId);
  const mark = check ? (check.verified ? '✓ evidence verified' : '✗ evidence NOT verified') : 'not sealed yet';
  return html`<g class="${hop.kind === 'refused' ? 'refused' : 'hop'}">
<rect x="1" y="${y}" width="${boxWidth}" height="${boxHeight}" rx="6"></rect>
<text class="title" x="14" y="${y + 22}">${fit(`${i + 1}. ${hopTitle(hop)}`, 64)}</text>
<text x="${boxWidth - 12}" y="${y + 22}" text-anchor="end">${mark}</text>
${hopLines(hop).map((line, n) => html`<text x="14" y="${y + 44 + n * 18}">${fit(line)}</text>`)}
${i < hops.length - 1 ? html`<path d="M ${boxWidth / 2} ${y + boxHeight} v ${gap - 6} l -5 -7 m 5 7 l 5 -7"></path>` : ''}
</g>`;
})}
</svg>`;
}

export interface TxnView {
  txn?: string;
  hops: Hop[];
  checks: ReadonlyMap<string, ProofCheck>;
  error?: string;
}

export function consoleTxnPage(base: string, session: ConsoleSession, view: TxnView): SafeHtml {
  const verified = view.hops.filter((hop) => view.checks.get(hop.eventId)?.verified).length;
  return consoleShell({
    base,
    session,
    section: 'txn',
    title: view.txn ? `Transaction ${view.txn}` : 'Transactions',
    body: html`<h1>Who authorised this transaction?</h1>
<form method="get" action="${base}/console/txn" class="search" role="search" aria-label="Find a transaction">
<div><label for="f-txn">Transaction id (txn)</label><input type="text" id="f-txn" name="txn" value="${view.txn ?? ''}" required></div>
<div class="actions"><button type="submit">Show the chain</button></div>
</form>
${pageOutcome(view)}
${
  view.txn && !view.error
    ? view.hops.length === 0
      ? html`<p>No audit events are filed under this transaction.</p>`
      : html`<h2>The chain of transaction <code>${view.txn}</code></h2>
<p id="evidence-summary">${verified} of ${view.hops.length} event(s) verified against the latest signed checkpoint.</p>
${chainSvg(view.hops, view.checks)}
<table>
<caption class="muted">Each hop, as the audit log records it</caption>
<thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">What</th><th scope="col">Client and firm</th><th scope="col">Subject and actors</th><th scope="col">Audience</th><th scope="col">Mandate</th><th scope="col">Policy</th><th scope="col">Evidence</th></tr></thead>
<tbody>${view.hops.map(
          (hop, i) =>
            html`<tr${hop.kind === 'refused' ? html` class="refused"` : ''}><td>${i + 1}</td><td><a href="${base}/console/audit/events/${hop.eventId}">${iso(hop.time)}</a></td><td>${hop.type}${hop.refusal ? html`<br><span class="not-verified">${hop.refusal}</span>` : ''}</td><td><code>${hop.client ?? ''}</code>${hop.firm ? html`<br>${hop.firm}` : ''}</td><td><code>${hop.subject ?? ''}</code>${hop.actChain.length ? html`<br>acting: <code>${hop.actChain.join(' ← ')}</code>` : ''}${hop.agent ? html`<br>agent ${hop.agent}` : ''}</td><td><code>${hop.audience ?? ''}</code></td><td>${hop.mandate ? html`<code>${hop.mandate.id}</code> v${hop.mandate.v}` : ''}</td><td>${hop.policyVersion ?? ''}${hop.reasons.length ? html`<br><span class="muted">${hop.reasons.join(', ')}</span>` : ''}</td><td>${proofLine(view.checks.get(hop.eventId))}</td></tr>`,
        )}</tbody>
</table>
<p>${bundleLink(base, new URLSearchParams({ txn: view.txn }), 'Download the evidence bundle')} <span class="muted">(signed; check it offline with <code>clearance audit verify-bundle</code>)</span></p>`
    : ''
}`,
  });
}
