import { passkeyScripts, stylesheetHref } from './assets.ts';
import { html, type SafeHtml } from './html.ts';

export interface PageShell {
  /** The document title (also the main heading's text, usually). */
  title: string;
  /** The issuer's path ('' for a host-only issuer), under which assets live. */
  base: string;
  body: SafeHtml;
  /** The page runs a passkey ceremony: it loads the passkey scripts (and its CSP must allow them). */
  passkeys?: boolean;
  /** A wide page (the console's tables and pictures). */
  wide?: boolean;
}

/**
 * The document every page shares: language, viewport, the stylesheet, one `main` landmark. No
 * script, except the two passkey scripts on the pages that run a passkey ceremony (sign-in,
 * consent with an approval, account, a request to approve), loaded from Clearance's origin with their SRI digests; every page works without
 * JavaScript (a passkey needs it: its forms stay hidden without it).
 */
export function layout(shell: PageShell): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${shell.title} – Clearance</title>
<link rel="stylesheet" href="${stylesheetHref(shell.base)}">
${shell.passkeys ? passkeyScripts.map((script) => html`<script src="${shell.base}${script.path}?v=${script.version}" integrity="${script.integrity}" defer></script>\n`) : ''}</head>
<body>
${shell.wide ? html`<main class="wide">` : html`<main>`}
<p class="product">Clearance</p>
${shell.body}
</main>
</body>
</html>
`;
}
