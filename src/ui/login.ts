import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export interface LoginView {
  /** The issuer's path ('' for a host-only issuer). */
  base: string;
  /** Where the form posts (`<base>/interaction/<id>/login`). */
  action: string;
  csrfToken: string;
  /** The application the person is signing in to (its registered name, or client_id). */
  clientName: string;
  /** Kept after a failed attempt, so only the password is typed again. */
  username?: string;
  /** Shown in the alert region: why the last attempt failed, in plain words. */
  error?: string;
  /** Shown above the form: why a sign-in is asked for (e.g. the application asks for a fresh one). */
  notice?: string;
  /** Signing in with a passkey: where its form posts, and where its script asks for options. */
  passkey?: { action: string; options: string };
}

/**
 * The sign-in page: labelled fields named and autocompleted as password managers expect
 * (`username`, `current-password`), an alert region that screen readers announce, and nothing
 * that says whether a username exists. Below the password form, "Use a passkey": hidden until the passkey script finds the browser able; with
 * the username field empty it lets the person pick any of their passkeys for Clearance, with a
 * username it asks for one of that person's.
 */
export function loginPage(view: LoginView): SafeHtml {
  const invalid = view.error ? html` aria-invalid="true" aria-describedby="form-error"` : '';
  return layout({
    title: 'Sign in',
    base: view.base,
    passkeys: view.passkey !== undefined,
    body: html`<h1>Sign in</h1>
<p>to continue to <strong>${view.clientName}</strong></p>
${view.notice ? html`<p>${view.notice}</p>` : ''}
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256" value="${view.username ?? ''}"${invalid}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024"${invalid}>
<div class="actions"><button type="submit">Sign in</button></div>
</form>
${
  view.passkey
    ? html`<section class="passkey-signin" aria-labelledby="passkey-heading" data-passkey-section hidden>
<h2 id="passkey-heading">Or sign in with a passkey</h2>
<p class="muted">Leave the username empty to choose one of your passkeys, or type it first.</p>
<div class="error" role="alert" data-passkey-error></div>
<form method="post" action="${view.passkey.action}" data-passkey="login" data-options="${view.passkey.options}" data-username-field="username">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<input type="hidden" name="credential" value="">
<div class="actions"><button type="submit" class="secondary">Use a passkey</button></div>
</form>
</section>`
    : ''
}`,
  });
}
