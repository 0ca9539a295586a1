import { html, type SafeHtml } from './html.ts';

const dateFormat = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' });

/** A time as people read it, in UTC (the server does not know the person's time zone), in a <time> element. */
export function when(epochMs: number): SafeHtml {
  const date = new Date(epochMs);
  return html`<time datetime="${date.toISOString()}">${dateFormat.format(date)} UTC</time>`;
}
