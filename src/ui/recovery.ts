import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';
import { when } from './time.ts';

/**
 * The pages of a recovery of a lost authenticator (docs/recovery.md): the enrolment page a
 * recovery link opens, what it answers once the passkey is enrolled, and what the person sees on
 * /account when they open a request themselves.
 */

export interface EnrolmentView {
  base: string;
  /** The form's action and the options' URL: the link itself (its token is in the path). */
  action: string;
  csrfToken: string;
  username: string;
  expiresAt: number;
  /**
   * Whether the link asks for the person's password: not for a leaver coming back, who holds none
   * (src/lifecycle/credential-hold.ts: the link alone enrols, after its approval).
   */
  asksPassword: boolean;
  error?: string;
}

/**
 * The enrolment page: one form, to enrol a new passkey — the person's password (what makes the
 * link theirs alone) and a name; the passkey script runs the ceremony (the form stays hidden
 * without it). Nothing else is offered: no sign-in, no account page.
 */
export function enrolmentPage(view: EnrolmentView): SafeHtml {
  return layout({
    title: 'Enrol a new passkey',
    base: view.base,
    passkeys: true,
    body: html`<h1>Enrol a new passkey</h1>
<p>Your recovery was approved. This page lets <strong>${view.username}</strong> enrol one new passkey, once, until ${when(view.expiresAt)}. Afterwards, sign in through your application with it.</p>
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<section aria-labelledby="enrol-heading" data-passkey-section hidden>
<h2 id="enrol-heading">Your new passkey</h2>
<div class="error" role="alert" data-passkey-error></div>
<form method="post" action="${view.action}" data-passkey="register" data-options="${view.action}/options">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<input type="hidden" name="credential" value="">
${view.asksPassword ? html`<label for="recovery-password">Your password</label>
<input type="password" id="recovery-password" name="password" required autocomplete="current-password" maxlength="1024">
` : ''}<label for="passkey-name">Name for the new passkey</label>
<input type="text" id="passkey-name" name="name" required maxlength="64" placeholder="e.g. Work laptop">
<div class="actions"><button type="submit">Enrol the passkey</button></div>
</form>
</section>
<noscript><p class="notice">Enrolling a passkey needs JavaScript. Open this link in a browser that allows it.</p></noscript>`,
  });
}

/** After the enrolment: the passkey is ready; nothing else happened (no session). */
export function enrolledPage(base: string): SafeHtml {
  return layout({
    title: 'Your new passkey is ready',
    base,
    body: html`<h1>Your new passkey is ready</h1>
<p>This link has been used and no longer works. Sign in through your application with your new passkey.</p>`,
  });
}

/** The answer to a person who opened a recovery themselves: the link, shown once. */
export function requestOpenedPage(base: string, view: { link: string; expiresAt: number; enrolmentMinutes: number }): SafeHtml {
  return layout({
    title: 'Recovery requested',
    base,
    body: html`<h1>Recovery requested</h1>
<p>Your request waits for a second person (a recovery approver) until ${when(view.expiresAt)}. They may contact you to check it is you. Nothing changes until they approve it.</p>
<p>When it is approved, you are signed out everywhere, your lost credentials stop working, and this link lets you enrol a new passkey for ${view.enrolmentMinutes} minutes, with your password:</p>
<p class="secret" id="recovery-link">${view.link}</p>
<p class="notice">Keep this link: it is shown only now. It is useless without your password, and useless before the approval.</p>
<p><a href="${base}/account">Back to your account</a></p>`,
  });
}

/** The account page's section: ask for a recovery of a lost passkey or authenticator. */
export function recoverySection(base: string, csrfToken: string, view: { allowed: boolean }): SafeHtml {
  return html`<section aria-labelledby="recovery-heading">
<h2 id="recovery-heading">Lost a passkey or your authenticator?</h2>
${
  view.allowed
    ? html`<p>Ask for a recovery. A second person must approve it; then you are signed out everywhere, what you lost stops working, and a link lets you enrol a new passkey.</p>
<form method="post" action="${base}/account/recovery">
<input type="hidden" name="${csrfField}" value="${csrfToken}">
<fieldset><legend>What did you lose?</legend>
<label><input type="checkbox" name="lost" value="passkeys" checked> My passkeys</label>
<label><input type="checkbox" name="lost" value="authenticator" checked> My authenticator app</label>
</fieldset>
<div class="actions"><button type="submit" class="secondary">Ask for a recovery</button></div>
</form>`
    : html`<p class="muted" id="recovery-locked">To ask for a recovery yourself, sign in with your password and a second factor (your authenticator app or a recovery code); otherwise ask your help desk.</p>`
}
</section>`;
}
