import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export interface SecondFactorView {
  /** The issuer's path ('' for a host-only issuer). */
  base: string;
  /** Where both forms post (`<base>/interaction/<id>/second-factor`). */
  action: string;
  csrfToken: string;
  /** The application the person is signing in to. */
  clientName: string;
  /** Whose password was entered (the person sees whom they are finishing the sign-in for). */
  username: string;
  /**
   * Whether the person may use a recovery code. False for a person holding a privileged role
   * (src/identity/roles.ts): the page says how they recover instead.
   */
  recoveryAllowed: boolean;
  /** Shown in the alert region: why the last attempt failed, in plain words. */
  error?: string;
  /** Which field the error is about. */
  errorField?: 'code' | 'recovery_code';
}

/**
 * The second step of a sign-in: the 6-digit code of the person's authenticator app (a numeric
 * field autocompleted as a one-time code, so phones offer it), or, in a second form, one of their
 * recovery codes. No script: both forms post to Clearance and are answered with a 303 or this page.
 */
export function secondFactorPage(view: SecondFactorView): SafeHtml {
  const invalid = (field: 'code' | 'recovery_code') => (view.error && (view.errorField ?? 'code') === field ? html` aria-invalid="true" aria-describedby="form-error"` : '');
  const csrf = html`<input type="hidden" name="${csrfField}" value="${view.csrfToken}">`;
  return layout({
    title: 'Enter your code',
    base: view.base,
    body: html`<h1>Enter your code</h1>
<p>to finish signing in as <strong>${view.username}</strong> to <strong>${view.clientName}</strong></p>
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<form method="post" action="${view.action}">
${csrf}
<label for="code">Code from your authenticator app</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required autofocus${invalid('code')}>
<p class="muted">Open the authenticator app you set up for Clearance and type the 6-digit code it shows now. Each code works once.</p>
<div class="actions"><button type="submit">Verify</button></div>
</form>
<h2>Lost your authenticator?</h2>
${
  view.recoveryAllowed
    ? html`<form method="post" action="${view.action}">
${csrf}
<label for="recovery_code">Recovery code</label>
<input type="text" id="recovery_code" name="recovery_code" autocomplete="off" autocapitalize="none" spellcheck="false" maxlength="32" required${invalid('recovery_code')}>
<p class="muted">One of the ten codes you saved when you set up your authenticator. Each works once, and your account page will show that it was used.</p>
<div class="actions"><button type="submit" class="secondary">Use a recovery code</button></div>
</form>`
    : html`<p id="no-recovery">Recovery codes cannot be used with your role. Access is restored only through an
independent approval: ask your administrator (this recovery is not yet available in Clearance).</p>`
}`,
  });
}
