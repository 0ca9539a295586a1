import type { AccountNotice } from '../identity/factors/notices.ts';
import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';
import { when } from './time.ts';

/** The person's second factors as the account page shows them. */
export interface AccountFactorsView {
  /**
   * Their authenticator: confirmed, or enrolment begun but not confirmed (`pendingHere`: by this
   * session, the only one that may continue it).
   */
  totp?: { confirmed: boolean; createdAt: number; lastUsedAt: number | null; pendingHere: boolean };
  recoveryCodesLeft: number;
  /** The privileged roles they hold (recovery codes are not for them). */
  privilegedRoles: string[];
  /**
   * Set when this session may not set up or remove the authenticator (it was not made with the
   * person's strongest factor): what to do first. The forms are left out.
   */
  authenticatorLocked?: string;
  /** Likewise for making new recovery codes (also refused to a session made with a recovery code). */
  recoveryCodesLocked?: string;
}

/** The notices kept for the person since their last visit (a recovery code was used; a recovery of theirs). */
export function noticesSection(notices: readonly AccountNotice[]): SafeHtml | '' {
  if (notices.length === 0) return '';
  return html`<section aria-labelledby="notices-heading">
<h2 id="notices-heading">Since your last visit</h2>
${notices.map((notice) => (notice.kind === 'recovery_code_used' ? recoveryCodeNotice(notice) : recoveryNotice(notice)))}</section>`;
}

function recoveryCodeNotice(notice: AccountNotice): SafeHtml {
  return html`<p class="notice" role="status">A recovery code was used to sign in to your account on ${when(notice.createdAt)}${
    notice.details.source_address ? html` from ${notice.details.source_address}` : ''
  }. ${notice.details.remaining !== undefined ? html`${notice.details.remaining} unused recovery codes are left. ` : ''}If this was not you,
change your password and remove your authenticator, then tell your administrator.</p>
`;
}

const lostNames: Record<string, string> = { passkeys: 'your passkeys', authenticator: 'your authenticator app and its recovery codes' };

/** A step of a recovery of the person's account (src/identity/recovery/notices.ts). */
function recoveryNotice(notice: AccountNotice): SafeHtml {
  const { opened_by: openedBy, lost = [], upstream_links_ended: links = 0, source_address: address } = notice.details;
  const removed = lost.map((f) => lostNames[f] ?? f).join(' and ');
  const what =
    notice.kind === 'recovery_opened'
      ? html`A recovery of your account was asked for on ${when(notice.createdAt)}, ${openedBy === 'self' ? 'by you' : 'by the help desk'}.`
      : notice.kind === 'recovery_approved'
        ? html`A recovery of your account was approved on ${when(notice.createdAt)}: you were signed out everywhere${removed ? html`, ${removed} were removed` : ''}${
            links > 0 ? html`, and your organisation’s sign-in was unlinked from this account (to join them again, sign in through your organisation, then with this account when asked)` : ''
          }.`
        : html`A new passkey was enrolled through your recovery link on ${when(notice.createdAt)}${address ? html` from ${address}` : ''}.`;
  return html`<p class="notice" role="status">${what} If this was not you, tell your administrator at once.</p>
`;
}

/**
 * The "Two-step sign-in" section of the account page: the authenticator (set up, or remove), the
 * recovery codes left (regenerate), and for a person holding a privileged role, why they have none.
 */
export function factorsSection(base: string, csrfToken: string, view: AccountFactorsView): SafeHtml {
  const csrf = html`<input type="hidden" name="${csrfField}" value="${csrfToken}">`;
  const privileged = view.privilegedRoles.length > 0;
  const totp = view.totp?.confirmed ? view.totp : undefined;
  return html`<section aria-labelledby="factors-heading">
<h2 id="factors-heading">Two-step sign-in</h2>
${
  totp
    ? html`<div class="factor" id="totp">
<h3>Authenticator app</h3>
<p>Set up on ${when(totp.createdAt)}${totp.lastUsedAt !== null ? html`, last used on ${when(totp.lastUsedAt)}` : ''}. You enter its code after your password.</p>
${
  view.authenticatorLocked
    ? html`<p class="muted" id="authenticator-locked">${view.authenticatorLocked}</p>`
    : html`<form method="post" action="${base}/account/totp/remove">
${csrf}
<button type="submit" class="secondary">Remove authenticator</button>
</form>`
}
</div>
<div class="factor" id="recovery-codes">
<h3>Recovery codes</h3>
${
  privileged
    ? html`<p>Recovery codes cannot be used with your role (${view.privilegedRoles.join(', ')}). If you lose your authenticator,
access is restored only through an independent approval: ask your administrator (this recovery is not yet available in Clearance).</p>`
    : html`<p>${view.recoveryCodesLeft} of 10 unused. Each signs you in once if you lose your authenticator.</p>
${
  view.recoveryCodesLocked
    ? view.recoveryCodesLocked !== view.authenticatorLocked
      ? html`<p class="muted" id="recovery-codes-locked">${view.recoveryCodesLocked}</p>`
      : ''
    : html`<form method="post" action="${base}/account/recovery-codes">
${csrf}
<button type="submit" class="secondary">Make new recovery codes</button>
</form>
<p class="muted">New codes replace all the old ones at once.</p>`
}`
}
</div>`
    : html`<p id="no-totp">${
        view.authenticatorLocked ? 'Your account has no authenticator app.' : 'Only your password protects your account.'
      } Add an authenticator app (such as Google Authenticator,
Microsoft Authenticator or 1Password): after your password, you will enter the 6-digit code it shows.</p>
${
  view.authenticatorLocked
    ? html`<p class="muted" id="authenticator-locked">${view.authenticatorLocked}</p>`
    : html`<form method="post" action="${base}/account/totp">
${csrf}
<div class="actions"><button type="submit">${view.totp ? 'Start again: set up an authenticator' : 'Set up an authenticator'}</button></div>
</form>
${
  view.totp?.pendingHere
    ? html`<p class="muted">You started setting one up without confirming it: <a href="${base}/account/totp">continue</a>.</p>`
    : view.totp
      ? html`<p class="muted">Setting one up was started in another session and not confirmed: it can be continued only there, or started again here.</p>`
      : ''
}`
}`
}
</section>`;
}

export interface TotpSetupView {
  base: string;
  csrfToken: string;
  /** The QR code of the otpauth URI (src/ui/qr.ts). */
  qr: SafeHtml;
  /** The base32 secret, for typing into an app by hand. */
  secret: string;
  error?: string;
}

/** Shows a base32 secret in groups of four, as people type it. */
function grouped(secret: string): string {
  return secret.match(/.{1,4}/g)?.join(' ') ?? secret;
}

/**
 * Enrolling an authenticator: the QR code, the secret in text, and a form for the first code,
 * which confirms that the app and Clearance agree before the authenticator is used to sign in.
 */
export function totpSetupPage(view: TotpSetupView): SafeHtml {
  const invalid = view.error ? html` aria-invalid="true" aria-describedby="form-error"` : '';
  return layout({
    title: 'Set up an authenticator',
    base: view.base,
    body: html`<h1>Set up an authenticator</h1>
<ol class="requests">
<li>In your authenticator app, add an account and scan this QR code:</li>
</ol>
${view.qr}
<p>Or type this key instead (time-based, 6 digits, every 30 seconds):</p>
<p class="secret" id="totp-secret">${grouped(view.secret)}</p>
<ol class="requests" start="2">
<li>Enter the code the app now shows, to confirm.</li>
</ol>
<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>
<form method="post" action="${view.base}/account/totp/confirm">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<label for="code">Code from your authenticator app</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required${invalid}>
<div class="actions"><button type="submit">Confirm</button></div>
</form>
<p><a href="${view.base}/account">Back to your account</a></p>`,
  });
}

export interface RecoveryCodesView {
  base: string;
  /** The new codes: shown on this page only, never again. */
  codes: readonly string[];
  /** True right after confirming an authenticator; false after regenerating. */
  justEnrolled: boolean;
  /** For a privileged person: no codes, and why. */
  privilegedRoles?: readonly string[];
}

/** After confirming an authenticator (or asking for new codes): the recovery codes, shown once. */
export function recoveryCodesPage(view: RecoveryCodesView): SafeHtml {
  const privileged = (view.privilegedRoles ?? []).length > 0;
  return layout({
    title: view.justEnrolled ? 'Authenticator set up' : 'New recovery codes',
    base: view.base,
    body: html`<h1>${view.justEnrolled ? 'Your authenticator is set up' : 'Your new recovery codes'}</h1>
${view.justEnrolled ? html`<p>From now on you enter its code after your password.</p>` : html`<p>Your old recovery codes no longer work.</p>`}
${
  privileged
    ? html`<p id="no-recovery">Recovery codes cannot be used with your role (${(view.privilegedRoles ?? []).join(', ')}). If you lose your
authenticator, access is restored only through an independent approval: ask your administrator (this recovery is not yet available in Clearance).</p>`
    : html`<h2>Recovery codes</h2>
<p><strong>Save these codes now: this is the only time they are shown.</strong> If you lose your authenticator, each
code signs you in once instead of its code. Keep them somewhere safe, apart from your phone.</p>
<ol class="codes" id="recovery-code-list">
${view.codes.map((code) => html`<li>${code}</li>\n`)}</ol>`
}
<p><a href="${view.base}/account">Continue to your account</a></p>`,
  });
}
