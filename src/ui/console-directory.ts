import type { ConsoleSession } from '../console/session.ts';
import type { ReviewedPerson } from '../identity/access-review.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell } from './console.ts';

/** One section of the directory: the admin API's list, or why the person's token may not read it. */
export type DirectorySection<T> = { rows: T[] } | { refused: string };

/**
 * A list not read yet, since the request did not come from the console's own link: reading it is
 * a read of people on the person's record (people.reviewed), offered on a form instead.
 */
export type NotReadYet = { confirmFirst: true };

export interface DirectoryView {
  clients: DirectorySection<{ client_id: string; client_name?: string; kind?: string; owner_lei?: string; token_endpoint_auth_method?: string; grant_types?: string[]; scope?: string }>;
  resourceServers: DirectorySection<{ identifier: string; name?: string; scopes: string[]; access_token_ttl: number; require_sender_constraint?: boolean }>;
  partners: DirectorySection<{ id: string; name?: string; issuer: string; algorithms?: string[] }>;
  entities: DirectorySection<{ lei: string; name: string; jurisdiction: string; home_region: string; roles?: string[]; desks?: { id: string }[] }>;
  agents: DirectorySection<{ id: string; client_id: string; status?: string; owner_lei: string; certificate_profile: string; models: { version: string; status: string }[] }>;
  /** Mandates name people (a grantee, who signed, accepted or revoked one): `NotReadYet` as the people are. */
  mandates: DirectorySection<{ id: string; version: number; status: string; grantor: Record<string, string>; grantee: Record<string, string>; scopes: string[]; effective_to: string | null }> | NotReadYet;
  policies: DirectorySection<{ version: string; active: boolean; author: string; approver: string | null; change_ref: string; activated_at: string | null }>;
  /** The people, or not read yet (`NotReadYet`). */
  people: DirectorySection<ReviewedPerson> | NotReadYet;
  /** GET /admin/transfer-destinations: every account's address book (docs/transfers.md). */
  destinations: DirectorySection<{ id: string; lei: string; account: string; destination_key: string; kind: string; status: string; version?: number; usable_from?: string; label?: string }>;
  /** GET /admin/keys: not a list but one inventory, or why it may not be read. */
  keys: { inventory: KeyInventory } | { refused: string };
}

/** What GET /admin/keys answers (src/endpoints/admin/keys.ts). */
export interface KeyInventory {
  within_days: number;
  signing_keys: { kid: string; alg: string; state: string; activates_at: string | null; retirable_at: string | null }[];
  audit_key: { key_id: string; origin: string } | null;
  authorities: { id: string; role: string; subject: string; status: string; not_after: string | null; expires_soon: boolean }[];
  certificates: { valid: number; expiring: { serial: string; profile: string; holder: string; not_after: string | null }[]; truncated: boolean };
}

/** An address-book state in words, a destination that cannot be used marked. */
function destinationState(state: string): SafeHtml {
  const words: Record<string, string> = { usable: 'usable', cooling_down: 'cooling down', pending: 'awaits approval', held_for_review: 'held for review', removed: 'removed', unknown: 'no approved version' };
  return state === 'usable' ? html`${words[state]}` : html`<span class="not-verified">${words[state] ?? state}</span>`;
}

/** A person's sign-in means in words: password, authenticator app, passkeys, recovery codes left. */
function factorsOf(person: ReviewedPerson): string {
  const f = person.factors;
  const means = [f.password ? 'password' : '', f.totp ? 'authenticator app' : '', f.passkeys ? `${f.passkeys} passkey${f.passkeys === 1 ? '' : 's'}` : '', f.recovery_codes_left ? `${f.recovery_codes_left} recovery codes` : ''].filter(Boolean);
  return means.length ? means.join(', ') : 'none';
}

/** The keys and certificates, with what expires within the inventory's window marked. */
function keysSection(data: DirectoryView['keys']): SafeHtml {
  if ('refused' in data) return html`<section aria-labelledby="keys"><h2 id="keys">Keys and certificates</h2><p class="muted">${data.refused}</p></section>`;
  const k = data.inventory;
  const soon = html`<strong class="not-verified">expires within ${k.within_days} days</strong>`;
  return html`<section aria-labelledby="keys"><h2 id="keys">Keys and certificates</h2>
<h3>Token signing keys</h3>
<table>
<thead><tr><th scope="col">Key id</th><th scope="col">Algorithm</th><th scope="col">State</th><th scope="col">Signs from</th><th scope="col">Retirable from</th></tr></thead>
<tbody>${k.signing_keys.map((key) => html`<tr><td><code>${key.kid}</code></td><td>${key.alg}</td><td>${key.state}</td><td>${key.activates_at ?? ''}</td><td>${key.retirable_at ?? ''}</td></tr>`)}</tbody>
</table>
<p>Audit log key: ${k.audit_key ? html`<code>${k.audit_key.key_id}</code> <span class="muted">(${k.audit_key.origin})</span>` : 'none yet (no checkpoint)'}</p>
<h3>Certificate authorities</h3>
${
  k.authorities.length === 0
    ? html`<p class="muted">No private CA (clearance ca init).</p>`
    : html`<table>
<thead><tr><th scope="col">Role</th><th scope="col">Subject</th><th scope="col">Status</th><th scope="col">Valid until</th></tr></thead>
<tbody>${k.authorities.map((a) => html`<tr><td>${a.role}</td><td><code>${a.subject}</code></td><td>${a.status}</td><td>${a.not_after ?? ''}${a.expires_soon ? html`<br>${soon}` : ''}</td></tr>`)}</tbody>
</table>`
}
<h3>Certificates that expire within ${k.within_days} days <span class="muted">(${k.certificates.expiring.length}${k.certificates.truncated ? '+' : ''} of ${k.certificates.valid} valid)</span></h3>
${
  k.certificates.expiring.length === 0
    ? html`<p class="muted">None.</p>`
    : html`<table>
<thead><tr><th scope="col">Holder</th><th scope="col">Profile</th><th scope="col">Serial</th><th scope="col">Expires</th></tr></thead>
<tbody>${k.certificates.expiring.map((c) => html`<tr><td><code>${c.holder}</code></td><td>${c.profile}</td><td><code>${c.serial}</code></td><td>${c.not_after ?? ''}</td></tr>`)}</tbody>
</table>`
}</section>`;
}

/**
 * The one form that lists the mandates and the people when they were not read: each list is a read
 * of people on the person's record, done on the console's own form (its CSRF token), which no
 * other site can submit.
 */
function listOnConfirmation(base: string, session: ConsoleSession): SafeHtml {
  return html`<form method="post" action="${base}/console/directory" id="list-people">
<input type="hidden" name="csrf_token" value="${session.csrf}">
<p>Listing the mandates (each names its grantee and who signed it) and the people (an access review) is recorded in your name (<code>people.reviewed</code>). Your browser did not say that this page was opened from the console, so they are listed only when you ask.</p>
<div class="actions"><button type="submit">List the mandates and the people</button></div>
</form>`;
}

/** A section whose list was not read yet: it points to the form that lists it. */
function notReadSection(id: string, title: string): SafeHtml {
  return html`<section aria-labelledby="${id}"><h2 id="${id}">${title}</h2>
<p class="muted">Not listed yet: <a href="#list-people">list the mandates and the people</a>.</p></section>`;
}

function section<T>(id: string, title: string, data: DirectorySection<T> | NotReadYet, head: string[], row: (item: T) => SafeHtml): SafeHtml {
  if ('confirmFirst' in data) return notReadSection(id, title);
  const body =
    'refused' in data
      ? html`<p class="muted">${data.refused}</p>`
      : data.rows.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<table>
<thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
<tbody>${data.rows.map(row)}</tbody>
</table>`;
  return html`<section aria-labelledby="${id}"><h2 id="${id}">${title}${'rows' in data ? html` <span class="muted">(${data.rows.length})</span>` : ''}</h2>
${body}</section>`;
}

const list = (values: readonly string[] | undefined) => (values ?? []).join(' ');
/** A mandate's party as the API writes it (`{ lei }`, `{ account }`, `{ client_id }`, …). */
const party = (document: Record<string, string>) => Object.entries(document).map(([kind, id]) => html`${kind} <code>${id}</code>`);

/**
 * The directory (read-only): what is registered, each list read through the admin API with the
 * person's token. People are listed as an access review needs them (GET /admin/access-review:
 * username, roles, desks, status, factors, sessions — never a name or email), a read the API
 * records (AMENDMENTS: personal data only where a role needs it, every read on the record).
 */
export function consoleDirectoryPage(base: string, session: ConsoleSession, view: DirectoryView): SafeHtml {
  return consoleShell({
    base,
    session,
    section: 'directory',
    title: 'Directory',
    body: html`<h1>Directory</h1>
<p class="muted">What is registered, as the admin API answers it; changes go through <code>clearance apply</code> or the admin API.</p>
<nav aria-label="Sections"><p>${[
      ['clients', 'Clients'],
      ['resource-servers', 'Resource servers'],
      ['partners', 'Partners'],
      ['entities', 'Legal entities'],
      ['agents', 'Agents'],
      ['mandates', 'Mandates'],
      ['policies', 'Policies'],
      ['people', 'People'],
      ['keys', 'Keys and certificates'],
    ].map(([id, label], i) => html`${i ? ' · ' : ''}<a href="#${id}">${label}</a>`)}</p></nav>
${'confirmFirst' in view.mandates || 'confirmFirst' in view.people ? listOnConfirmation(base, session) : ''}
${section('clients', 'Clients', view.clients, ['Client', 'Kind', 'Firm (LEI)', 'Authentication', 'Grants', 'Scope'], (c) => html`<tr><td><code>${c.client_id}</code>${c.client_name ? html`<br>${c.client_name}` : ''}</td><td>${c.kind ?? ''}</td><td><code>${c.owner_lei ?? ''}</code></td><td>${c.token_endpoint_auth_method ?? ''}</td><td>${list(c.grant_types)}</td><td><code>${c.scope ?? ''}</code></td></tr>`)}
${section('resource-servers', 'Resource servers', view.resourceServers, ['Audience', 'Scopes', 'Token lifetime', 'Sender-constrained'], (r) => html`<tr><td><code>${r.identifier}</code>${r.name ? html`<br>${r.name}` : ''}</td><td><code>${list(r.scopes)}</code></td><td>${r.access_token_ttl} s</td><td>${r.require_sender_constraint ? 'required' : 'optional'}</td></tr>`)}
${section('partners', 'Partners', view.partners, ['Partner', 'Issuer', 'Algorithms'], (p) => html`<tr><td><a href="${base}/console/partners/${encodeURIComponent(p.id)}"><code>${p.id}</code></a>${p.name ? html`<br>${p.name}` : ''}</td><td><code>${p.issuer}</code></td><td>${list(p.algorithms)}</td></tr>`)}
${section('entities', 'Legal entities', view.entities, ['LEI', 'Name', 'Jurisdiction', 'Region', 'Roles', 'Desks'], (e) => html`<tr><td><code>${e.lei}</code></td><td>${e.name}</td><td>${e.jurisdiction}</td><td>${e.home_region}</td><td>${list(e.roles)}</td><td>${(e.desks ?? []).map((d) => d.id).join(', ')}</td></tr>`)}
${section('agents', 'Agents', view.agents, ['Agent', 'Client', 'Firm (LEI)', 'Certificate profile', 'Models'], (a) => html`<tr><td><code>${a.id}</code>${a.status ? html`<br>${a.status}` : ''}</td><td><code>${a.client_id}</code></td><td><code>${a.owner_lei}</code></td><td>${a.certificate_profile}</td><td>${a.models.map((m) => `${m.version} ${m.status}`).join(', ')}</td></tr>`)}
${section('mandates', 'Mandates', view.mandates, ['Mandate', 'Status', 'Grantor', 'Grantee', 'Scopes', 'Ends'], (m) => html`<tr><td><a href="${base}/console/mandates/${encodeURIComponent(m.id)}"><code>${m.id}</code></a> v${m.version}</td><td>${m.status}</td><td>${party(m.grantor)}</td><td>${party(m.grantee)}</td><td><code>${list(m.scopes)}</code></td><td>${m.effective_to ?? 'open-ended'}</td></tr>`)}
${section('policies', 'Policies', view.policies, ['Version', 'Active', 'Change', 'Author', 'Approver', 'Activated'], (p) => html`<tr><td><a href="${base}/console/policies/${encodeURIComponent(p.version)}"><code>${p.version}</code></a></td><td>${p.active ? 'active' : ''}</td><td>${p.change_ref}</td><td>${p.author}</td><td>${p.approver ?? ''}</td><td>${p.activated_at ?? ''}</td></tr>`)}
${section('people', 'People', view.people, ['Username', 'Roles', 'Desks', 'Status', 'Factors', 'Live sessions', 'Last sign-in'], (p) => html`<tr><td><code>${p.username}</code></td><td>${list(p.roles)}</td><td>${list(p.desks)}</td><td>${p.status}${p.locked_at ? html`<br><span class="not-verified">locked ${p.locked_at}${p.lock_reason ? ` (${p.lock_reason})` : ''}</span>` : ''}</td><td>${factorsOf(p)}</td><td>${p.live_sessions}</td><td>${p.last_login_at ?? 'never'}</td></tr>`)}
${section('destinations', 'Transfer destinations', view.destinations, ['Account', 'Firm (LEI)', 'Destination', 'Label', 'State', 'Usable from'], (d) => html`<tr><td><code>${d.account}</code></td><td><code>${d.lei}</code></td><td><code>${d.destination_key}</code></td><td>${d.label ?? ''}</td><td>${destinationState(d.status)}${d.version !== undefined ? html` <span class="muted">(v${d.version})</span>` : ''}</td><td>${d.usable_from ?? ''}</td></tr>`)}
${keysSection(view.keys)}`,
  });
}
