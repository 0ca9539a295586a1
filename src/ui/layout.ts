import { stylesheetHref } from './assets.ts';
import { html, type SafeHtml } from './html.ts';

export interface PageShell {
  /** The document title (also the main heading's text, usually). */
  title: string;
  /** The issuer's path ('' for a host-only issuer), under which assets live. */
  base: string;
  body: SafeHtml;
}

/**
 * The document every page shares: language, viewport, the stylesheet, one `main` landmark. No
 * script anywhere: the pages work without JavaScript and the CSP allows none.
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
</head>
<body>
<main>
<p class="product">Clearance</p>
${shell.body}
</main>
</body>
</html>
`;
}
