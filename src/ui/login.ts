import { acr, amr, type Acr } from '../identity/acr.ts';
import { csrfField } from './csrf.ts';
import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

/** The level a sign-in must reach (the protocol side's NextStep `acr`), and whether only the client prefers it. */
export interface LevelAsked {
  acr: Acr;
  /** Only the client's acr_values ask it (OIDC Core §3.1.2.1): a weaker sign-in goes on at what it reached. */
  voluntary: boolean;
}

/**
 * A person who has authenticated — in this authorization request, or by the browser's session —
 * and whose sign-in is below the level asked: the page may name them and their own methods.
 */
export interface SteppingUp {
  username: string;
  /** How they signed in (RFC 8176 amr), to say it in words. */
  amr: string[];
  /** True: they signed in during this request (and it was not enough); false: an earlier session. */
  fresh: boolean;
  /** Which of their methods reach the level (src/identity/methods.ts). */
  reaching: { passkey: boolean; password: boolean };
  /** They have a password (for going on below a voluntary level). */
  hasPassword: boolean;
  /** Where they add a passkey or an authenticator app. */
  accountHref: string;
}

export interface LoginView {
  /** The issuer's path ('' for a host-only issuer). */
  base: string;
  /** Where the password form posts (`<base>/interaction/<id>/login`). */
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
  /** The level the sign-in must reach, when one above a password is asked. */
  level?: LevelAsked;
  /** Where "go back to the application" posts (declineAuthentication): offered for a required level. */
  decline?: string;
  /** Set once the person has authenticated below the level: the step-up variant of the page. */
  steppingUp?: SteppingUp;
  /**
   * Signing in through the person's organisation (upstream identity providers, src/federation/upstream):
   * where the form posts, the email or LEI typed (or the request's login_hint), and why it failed.
   * Absent when no provider is declared.
   */
  organisation?: { action: string; realm?: string; error?: string };
  /**
   * Signing in with a client certificate — a smart card (src/identity/certificates): where its form
   * posts. Absent when no authority signs people in with a certificate (apply's `person_certificates`).
   */
  certificate?: { action: string };
}

/**
 * The sign-in page. What it shows depends only on the authorization request (the level it asks)
 * until the person has authenticated, never on the username typed: nothing says whether an
 * account exists or which factors it has (no account enumeration).
 *
 * - No level, or a password: the username, then "Use a passkey" (first; hidden until the passkey
 *   script finds the browser able — with the username empty the browser offers any of the person's
 *   passkeys for Clearance), then the password.
 * - `:mfa`: the same, saying a passkey or the password and an authenticator's code are needed.
 * - `:phr`, `:phrh`: "needs a passkey": only the passkey; the password is behind "No passkey yet?"
 *   (to sign in and add one on the account page) or, for a voluntary level, "instead".
 * - With certificate sign-in set up (`certificate`): "Sign in with your smart card" after the
 *   passkey (or the password), on every level and on the step-up page — a smart card reaches them all.
 * - A required level: "Go back to the application" (the request ends with
 *   unmet_authentication_requirements).
 * - `steppingUp`: the person is known and below the level; the page says how they signed in, what
 *   is needed, and offers only their own methods that reach it — or says they have none.
 */
export function loginPage(view: LoginView): SafeHtml {
  return layout({
    title: view.steppingUp ? stepUpTitle(view.level) : 'Sign in',
    base: view.base,
    passkeys: view.passkey !== undefined,
    body: view.steppingUp ? stepUpBody(view, view.steppingUp) : signInBody(view),
  });
}

/** The words for what a level needs, as "… needs X" (a smart card reaches every level, when offered). */
function needs(level: Acr, smartCard = false): string {
  switch (level) {
    case acr.multiFactor:
      return smartCard
        ? 'two-step sign-in: your smart card, a passkey, or your password and a code from your authenticator app'
        : 'two-step sign-in: a passkey, or your password and a code from your authenticator app';
    case acr.phishingResistant:
      return smartCard ? 'your smart card or a passkey' : 'a passkey';
    case acr.phishingResistantHardware:
      return smartCard ? 'your smart card, or a passkey on a security key your organisation has approved' : 'a passkey on a security key your organisation has approved';
    default:
      return 'you to sign in';
  }
}

const needsPasskey = (level: LevelAsked | undefined): boolean => level?.acr === acr.phishingResistant || level?.acr === acr.phishingResistantHardware;

function stepUpTitle(level: LevelAsked | undefined): string {
  // A voluntary level is asked for, not needed: the person may go on below it.
  const verb = level?.voluntary ? 'asked for' : 'needed';
  if (level?.acr === acr.multiFactor) return `Two-step sign-in is ${verb}`;
  if (level?.acr === acr.phishingResistantHardware) return `An approved security key is ${verb}`;
  return `A passkey is ${verb}`;
}

/** How a person signed in, in words, from the authentication's amr (RFC 8176). */
export function signedInWith(methods: readonly string[]): string {
  if (methods.includes(amr.upstream)) return 'your organisation’s sign-in';
  if (methods.includes(amr.smartCard)) return 'your smart card';
  // A software certificate (src/identity/certificates/login.ts): a software key and nothing else.
  if (methods.length === 1 && methods[0] === amr.softwareKey) return 'a certificate';
  if (methods.includes(amr.hardwareKey) || methods.includes(amr.softwareKey)) return 'a passkey';
  if (methods.includes(amr.recoveryCode)) return 'your password and a recovery code';
  if (methods.includes(amr.oneTimePassword)) return 'your password and your authenticator app';
  if (methods.includes(amr.password)) return 'your password';
  return 'an earlier sign-in';
}

function levelSentence(view: LoginView): SafeHtml | string {
  const level = view.level;
  if (!level || level.acr === acr.password) return '';
  return level.voluntary
    ? html`<p class="notice" id="level">${view.clientName} asks for ${needs(level.acr, view.certificate !== undefined)}.</p>`
    : html`<p class="notice" id="level">${view.clientName} needs ${needs(level.acr, view.certificate !== undefined)}.</p>`;
}

const errorRegion = (view: LoginView) => html`<div id="form-error" class="error" role="alert">${view.error ?? ''}</div>`;

function passkeyForm(view: LoginView, inner: SafeHtml, label: string, only: boolean): SafeHtml | string {
  if (!view.passkey) return '';
  return html`<section class="passkey-signin" aria-label="Passkey" data-passkey-section hidden>
<div class="error" role="alert" data-passkey-error></div>
<form method="post" action="${view.passkey.action}" data-passkey="login" data-options="${view.passkey.options}" data-username-field="username">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<input type="hidden" name="credential" value="">
${inner}<div class="actions"><button type="submit">${label}</button></div>
</form>
</section>
${only ? html`<noscript><p class="muted">Passkeys need JavaScript, which is turned off for this page.</p></noscript>` : ''}`;
}

/** "Sign in through your organisation": home-realm discovery by work email or LEI (docs/identity-brokering.md). */
function organisationForm(view: LoginView): SafeHtml | string {
  const organisation = view.organisation;
  if (!organisation) return '';
  const invalid = organisation.error ? html` aria-invalid="true" aria-describedby="organisation-error"` : '';
  return html`<section class="organisation-signin" aria-labelledby="organisation-heading">
<h2 id="organisation-heading">Sign in through your organisation</h2>
<div id="organisation-error" class="error" role="alert">${organisation.error ?? ''}</div>
<form method="post" action="${organisation.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<label for="realm">Work email, or your firm’s LEI</label>
<input type="text" id="realm" name="realm" autocomplete="email" autocapitalize="none" spellcheck="false" required maxlength="256" value="${organisation.realm ?? ''}"${invalid}>
<div class="actions"><button type="submit" class="secondary">Continue with your organisation</button></div>
</form>
</section>`;
}

/**
 * "Sign in with your smart card": a plain form (no script); the certificate is the one the browser
 * presented to Clearance (or its trusted proxy) when it connected — the browser asks which, and
 * the card asks its PIN.
 */
function certificateForm(view: LoginView, secondary: boolean): SafeHtml | string {
  if (!view.certificate) return '';
  return html`<section class="certificate-signin" aria-labelledby="certificate-heading">
<h2 id="certificate-heading">Sign in with your smart card</h2>
<p class="muted">Insert your card first. Your browser may ask you to choose your certificate, and the card asks for its PIN.</p>
<form method="post" action="${view.certificate.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<div class="actions"><button type="submit"${secondary ? html` class="secondary"` : ''}>Sign in with your smart card</button></div>
</form>
</section>`;
}

function declineForm(view: LoginView, question: string): SafeHtml | string {
  if (!view.decline || !view.level || view.level.voluntary || view.level.acr === acr.password) return '';
  return html`<form method="post" action="${view.decline}" class="decline">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<p class="muted">${question ? `${question} ` : ''}Go back to ${view.clientName}: it will be told that you could not sign in the way it needs.</p>
<div class="actions"><button type="submit" class="secondary">Go back to ${view.clientName}</button></div>
</form>`;
}

/** The page before the person has authenticated: the same for every username. */
function signInBody(view: LoginView): SafeHtml {
  const invalid = view.error ? html` aria-invalid="true" aria-describedby="form-error"` : '';
  const intro = html`<h1>Sign in</h1>
<p>to continue to <strong>${view.clientName}</strong></p>
${view.notice ? html`<p>${view.notice}</p>` : ''}
${levelSentence(view)}
${errorRegion(view)}`;
  const passwordField = html`<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024"${invalid}>`;

  if (needsPasskey(view.level)) {
    // Only a passkey reaches the level: the password is for setting one up (or, for a voluntary
    // level, for going on without), with its own username field.
    const username = html`<label for="username">Username <span class="muted">(optional)</span></label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" maxlength="256" value="${view.username ?? ''}">
<p class="muted">Leave it empty to choose one of your passkeys for Clearance, or type it first.</p>
`;
    const voluntary = view.level!.voluntary;
    return html`${intro}
${passkeyForm(view, username, 'Use a passkey', true)}
${certificateForm(view, false)}
<details class="password-signin"${view.error && view.username !== undefined ? ' open' : ''}>
<summary>${voluntary ? 'Sign in with your password instead' : 'No passkey yet? Sign in with your password'}</summary>
<p class="muted">${
      voluntary
        ? html`${view.clientName} will be told that you signed in with a password, and may ask again.`
        : html`Your password alone does not take you to ${view.clientName}: once signed in, add a passkey on your account page, then use it here.`
    }</p>
<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<label for="password-username">Username</label>
<input type="text" id="password-username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256" value="${view.username ?? ''}"${invalid}>
${passwordField}
<div class="actions"><button type="submit" class="secondary">Sign in</button></div>
</form>
</details>
${organisationForm(view)}
${declineForm(view, 'Can’t use a passkey?')}`;
  }

  // The username first, shared by both ways: the passkey (first), then the password.
  return html`${intro}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" form="password-form" autocapitalize="none" spellcheck="false" required maxlength="256" value="${view.username ?? ''}"${invalid}>
${passkeyForm(view, html``, 'Use a passkey', false)}
<form id="password-form" method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
${passwordField}
<div class="actions"><button type="submit">Sign in</button></div>
</form>
${certificateForm(view, true)}
${organisationForm(view)}
${declineForm(view, 'Can’t sign in in one of these ways?')}`;
}

/** The page for a person who authenticated below the level: their own methods that reach it. */
function stepUpBody(view: LoginView, person: SteppingUp): SafeHtml {
  const level = view.level?.acr ?? acr.phishingResistant;
  const voluntary = view.level?.voluntary ?? false;
  const how = signedInWith(person.amr);
  const situation = person.fresh
    ? html`You signed in as <strong>${person.username}</strong> with ${how}, but ${view.clientName} ${voluntary ? 'asks for' : 'needs'} ${needs(level, view.certificate !== undefined)}.`
    : html`You are signed in as <strong>${person.username}</strong> with ${how}. ${view.clientName} ${voluntary ? 'asks for' : 'needs'} ${needs(level, view.certificate !== undefined)} to continue.`;
  const username = html`<input type="hidden" id="username" name="username" value="${person.username}">\n`;
  const passwordForm = (button: string) => html`<form method="post" action="${view.action}">
<input type="hidden" name="${csrfField}" value="${view.csrfToken}">
<input type="hidden" name="username" value="${person.username}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024"${view.error ? html` aria-invalid="true" aria-describedby="form-error"` : ''}>
${person.reaching.password && level === acr.multiFactor ? html`<p class="muted">Then the code from your authenticator app.</p>\n` : ''}<div class="actions"><button type="submit"${person.reaching.passkey ? html` class="secondary"` : ''}>${button}</button></div>
</form>`;
  const none = !person.reaching.passkey && !person.reaching.password;
  return html`<h1>${stepUpTitle(view.level)}</h1>
<p>to continue to <strong>${view.clientName}</strong></p>
<p id="level">${situation}</p>
${errorRegion(view)}
${person.reaching.passkey ? passkeyForm(view, username, 'Use your passkey', true) : ''}
${person.reaching.password ? passwordForm('Continue') : ''}
${certificateForm(view, person.reaching.passkey || person.reaching.password)}
${none ? html`<p id="no-method">${nothingReaches(level, person.accountHref)}</p>` : ''}
${voluntary && person.hasPassword && !person.reaching.password ? html`<details class="password-signin"${view.error && view.username !== undefined ? ' open' : ''}><summary>Sign in with your password instead</summary>
<p class="muted">${view.clientName} will be told that you signed in with a password, and may ask again.</p>
${passwordForm('Sign in')}
</details>` : ''}
${declineForm(view, none ? '' : 'Can’t do this now?')}`;
}

/** Why a known person cannot reach the level, and what they can do about it. */
function nothingReaches(level: Acr, accountHref: string): SafeHtml {
  const account = html`<a href="${accountHref}" target="_blank" rel="noopener">your account page</a> (it opens in a new tab)`;
  switch (level) {
    case acr.multiFactor:
      return html`You have not set up an authenticator app or a passkey. Set one up on ${account}, then reload this page and use it.`;
    case acr.phishingResistantHardware:
      return html`None of your passkeys is on a security key your organisation has approved. Ask your administrator which keys are approved, add one on ${account}, then reload this page and use it.`;
    default:
      return html`You have not added a passkey to your account. Add one on ${account}, then reload this page and use it.`;
  }
}
