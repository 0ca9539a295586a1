import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export interface ErrorView {
  base: string;
  title: string;
  /** What happened and what to do, in plain words; never internal detail. */
  message: string;
  /** The request id, for the person to quote to support. */
  reference?: string;
}

/**
 * The page for errors that must not go back to the application: an unknown or expired
 * interaction, a refused form, an authorization request whose client or redirect_uri could not
 * be trusted (RFC 9700 §4.1: never redirect before the redirect_uri is validated).
 */
export function errorPage(view: ErrorView): SafeHtml {
  return layout({
    title: view.title,
    base: view.base,
    body: html`<h1>${view.title}</h1>
<p>${view.message}</p>
${view.reference ? html`<p class="reference">Reference: <code>${view.reference}</code></p>` : ''}`,
  });
}
