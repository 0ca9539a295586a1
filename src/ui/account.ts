import type { AccountNotice } from '../identity/factors/notices.ts';
import { factorsSection, noticesSection, type AccountFactorsView } from './account-factors.ts';
import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';
import { recoverySection } from './recovery.ts';
import { when } from './time.ts';

/** One active grant as the account page lists it (src/authorization/consent.ts describeGrant). */
export interface AccountGrant {
  id: string;
  clientId: string;
  clientName: string;
  /** The consent page's sentences: OpenID scopes, business scopes, authorization_details. */
  lines: string[];
  /** Names of the resource servers the grant covers. */
  services: string[];
  /** Epoch ms: when the person first allowed the application. */
  createdAt: number;
  /** Epoch ms: the last approval that extended the grant. */
  updatedAt: number;
}

/** One of the person's passkeys as the account page lists it. */
export interface AccountPasskey {
  id: string;
  name: string;
  /** Epoch ms. */
  createdAt: number;
  lastUsedAt: number | null;
  /** Backup eligible: a synced passkey, usable on the person's other devices. */
  synced: boolean;
  /** Device-bound, with its attestation verified and its model on the operator's list. */
  hardware: boolean;
}

export interface AccountView {
  /** The issuer's path ('' for a host-only issuer). */
  base: string;
  /** The account forms' CSRF token (bound to the browser's secret and the session). */
  csrfToken: string;
  /** The person's name, else username. */
  signedInAs: string;
  username: string;
  grants: AccountGrant[];
  /** The person's second factors (src/ui/account-factors.ts). */
  factors: AccountFactorsView;
  /** Notices kept since the last visit (a recovery code was used), until a session made with the authenticator or a passkey shows them. */
  notices: AccountNotice[];
  passkeys: AccountPasskey[];
  /**
   * Set when this session may not change the passkeys (it was not made with the person's
   * strongest factor): what to do first. The passkeys are listed without their forms.
   */
  passkeysLocked?: string;
  /** Whether this session may ask for a recovery itself (two factors proved: src/identity/recovery). */
  recoveryAllowed: boolean;
  /** Shown in the alert region: why the last change was refused, in plain words. */
  error?: string;
}


/**
 * The account page of a signed-in person: who is signed in, what happened since their last visit
 * (a recovery code was used), their passkeys (each with when it was added and last used, whether
 * it is synced or bound to one device, a Rename and a Remove form) and an "Add a passkey" form
 * (shown when the passkey script finds the browser able), their two-step sign-in (authenticator,
 * recovery codes), every application they have allowed to act for them (in the consent page's
 * words, with when), a Revoke button for each, and Sign out. Every form posts to Clearance and is
 * answered with a 303 back to this page, or this page with the reason it was refused.
 */
export function accountPage(view: AccountView): SafeHtml {
  const csrf = html`<input type="hidden" name="${csrfField}" value="${view.csrfToken}">`;
  return layout({
    title: 'Your account',
    base: view.base,
    passkeys: true,
    body: html`<h1>Your account</h1>
<p>You are signed in as <strong>${view.signedInAs}</strong> (${view.username}).</p>
<p><a href="${view.base}/account/approvals">Requests waiting for your approval</a></p>
${noticesSection(view.notices)}
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<h2>Passkeys</h2>
${
  view.passkeys.length === 0
    ? html`<p id="no-passkeys">You have no passkeys. A passkey signs you in with your device’s screen lock or a security key, and cannot be used on a fake site.</p>`
    : view.passkeys.map(
        (passkey) => html`<section class="passkey" aria-labelledby="passkey-${passkey.id}">
<h3 id="passkey-${passkey.id}">${passkey.name}</h3>
<p class="muted">Added on ${when(passkey.createdAt)}; ${passkey.lastUsedAt === null ? 'not used yet' : html`last used on ${when(passkey.lastUsedAt)}`}.
${passkey.synced ? 'Synced: it can be used on your other devices.' : 'Device-bound: it stays on one device or security key.'}${passkey.hardware ? ' An approved hardware key.' : ''}</p>
${
  view.passkeysLocked
    ? ''
    : html`<form method="post" action="${view.base}/account/passkeys/${passkey.id}/rename">
${csrf}
<label for="rename-${passkey.id}">New name for ${passkey.name}</label>
<input type="text" id="rename-${passkey.id}" name="name" required maxlength="64" value="${passkey.name}">
<div class="actions"><button type="submit" class="secondary">Rename</button></div>
</form>
<form method="post" action="${view.base}/account/passkeys/${passkey.id}/remove">
${csrf}
<div class="actions"><button type="submit" class="secondary" aria-label="Remove ${passkey.name}">Remove</button></div>
</form>`
}
</section>
`,
      )
}
${
  view.passkeysLocked
    ? html`<p id="passkeys-locked" class="notice">${view.passkeysLocked}</p>`
    : html`<section class="passkey-add" aria-labelledby="add-passkey" data-passkey-section hidden>
<h3 id="add-passkey">Add a passkey</h3>
<div class="error" role="alert" data-passkey-error></div>
<form method="post" action="${view.base}/account/passkeys" data-passkey="register" data-options="${view.base}/account/passkeys/options">
${csrf}
<input type="hidden" name="credential" value="">
<label for="passkey-name">Name for the new passkey</label>
<input type="text" id="passkey-name" name="name" required maxlength="64" placeholder="e.g. Work laptop">
<div class="actions"><button type="submit">Add a passkey</button></div>
</form>
</section>`
}
${factorsSection(view.base, view.csrfToken, view.factors)}
${recoverySection(view.base, view.csrfToken, { allowed: view.recoveryAllowed })}
<h2>Applications you have allowed</h2>
${
  view.grants.length === 0
    ? html`<p id="no-grants">You have not allowed any application to act for you.</p>`
    : view.grants.map(
        (grant) => html`<section class="grant" aria-labelledby="grant-${grant.id}">
<h3 id="grant-${grant.id}">${grant.clientName}</h3>
<p class="muted">Allowed on ${when(grant.createdAt)}${grant.updatedAt !== grant.createdAt ? html`, last extended on ${when(grant.updatedAt)}` : ''}. Application identifier: ${grant.clientId}</p>
<p>${grant.clientName} may:</p>
<ul class="requests">
${grant.lines.map((line) => html`<li>${line}</li>\n`)}</ul>
${grant.services.length > 0 ? html`<p>At: ${grant.services.join(', ')}</p>` : ''}
<form method="post" action="${view.base}/account/grants/${encodeURIComponent(grant.id)}/revoke">
${csrf}
<button type="submit" class="secondary" aria-label="Revoke ${grant.clientName}">Revoke</button>
</form>
</section>
`,
      )
}
<p class="muted">Revoking stops the application at once: it can no longer refresh its access, and the
services it calls are told its tokens are no longer valid. It will ask you again the next time you use it.</p>
<form method="post" action="${view.base}/account/logout">
${csrf}
<div class="actions"><button type="submit">Sign out</button></div>
</form>`,
  });
}

/**
 * The account page without a session. There is no sign-in form here: signing in happens in an
 * authorization request of an application (where the login page knows what it is for), and this
 * page redirects nowhere, so it cannot be made into an open redirect.
 */
export function signedOutAccountPage(base: string): SafeHtml {
  return layout({
    title: 'Your account',
    base,
    body: html`<h1>Your account</h1>
<p>You are not signed in to Clearance in this browser.</p>
<p>To see and revoke the applications you have allowed, sign in through one of those applications,
then come back to this page.</p>`,
  });
}
