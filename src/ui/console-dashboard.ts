import type { Activity, ActivitySeries } from '../audit/activity.ts';
import type { ConsoleSession } from '../console/session.ts';
import { html, type SafeHtml } from './html.ts';
import { consoleShell, pageOutcome } from './console.ts';

/**
 * The console's dashboard (docs/console.md "Dashboard"): the admin API's activity counts
 * (GET /admin/audit/activity) drawn as server-rendered SVG bar charts — no script, no library —
 * each with a text alternative and its numbers in a table beside it, so a screen reader and a
 * printout read the same figures as the picture.
 */

/** The ranges the page offers: the API's bucket for each. */
export const dashboardRanges = {
  '1h': { label: 'Last hour', ms: 3600_000, bucket: 300 },
  '24h': { label: 'Last 24 hours', ms: 24 * 3600_000, bucket: 3600 },
  '7d': { label: 'Last 7 days', ms: 7 * 24 * 3600_000, bucket: 21600 },
  '30d': { label: 'Last 30 days', ms: 30 * 24 * 3600_000, bucket: 86400 },
} as const;
export type DashboardRange = keyof typeof dashboardRanges;

const seriesLabels: Record<ActivitySeries, string> = {
  issued: 'Tokens issued and exchanged',
  refused: 'Token requests refused',
  policy_denied: 'Policy denials',
  step_ups: 'Step-ups asked',
  anomalies: 'Anomalies',
  throttled: 'Throttled clients and locked people',
};

export interface DashboardView {
  range: DashboardRange;
  activity?: Activity;
  error?: string;
}

/** To the minute, UTC: what a chart's axis and a range need. */
const iso = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')}Z`;
const total = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms % 86_400_000 === 0) return ms === 86_400_000 ? '1 day' : `${ms / 86_400_000} days`;
  if (ms % 3600_000 === 0) return `${ms / 3600_000} h`;
  if (ms < 7200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3600_000)} h`;
}

const chartWidth = 640;
const chartHeight = 140;
const axis = 28;

/** One series as bars over time, the tallest bar labelled with its count. */
function barChart(id: string, label: string, buckets: readonly number[], values: readonly number[]): SafeHtml {
  const max = Math.max(1, ...values);
  const slot = (chartWidth - axis) / Math.max(1, values.length);
  const barWidth = Math.max(1, slot * 0.8);
  const peak = values.indexOf(Math.max(...values));
  const description = `${label}: ${total(values)} in all, at most ${Math.max(0, ...values)} per interval, from ${iso(buckets[0] ?? 0)} to ${iso((buckets.at(-1) ?? 0))}`;
  return html`<svg class="bars" viewBox="0 0 ${chartWidth} ${chartHeight + 20}" role="img" aria-labelledby="${id}-title">
<title id="${id}-title">${description}</title>
<line class="axis" x1="${axis}" y1="${chartHeight}" x2="${chartWidth}" y2="${chartHeight}"></line>
<text class="tick" x="${axis - 4}" y="12" text-anchor="end">${max}</text>
<text class="tick" x="${axis - 4}" y="${chartHeight}" text-anchor="end">0</text>
${values.map((value, i) => {
  const height = (value / max) * (chartHeight - 16);
  const x = axis + i * slot + (slot - barWidth) / 2;
  return value === 0 ? '' : html`<rect x="${x.toFixed(1)}" y="${(chartHeight - height).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${height.toFixed(1)}"></rect>`;
})}
${values[peak] ? html`<text class="peak" x="${(axis + peak * slot + slot / 2).toFixed(1)}" y="${(chartHeight - ((values[peak] ?? 0) / max) * (chartHeight - 16) - 3).toFixed(1)}" text-anchor="middle">${values[peak]}</text>` : ''}
<text class="tick" x="${axis}" y="${chartHeight + 16}">${iso(buckets[0] ?? 0)}</text>
<text class="tick" x="${chartWidth}" y="${chartHeight + 16}" text-anchor="end">${iso(buckets.at(-1) ?? 0)}</text>
</svg>`;
}

/** Refusals by reason as horizontal bars, most first (the ten largest; the table has them all). */
function reasonChart(reasons: Activity['refusals_by_reason']): SafeHtml {
  const shown = reasons.slice(0, 10);
  const max = Math.max(1, ...shown.map((r) => r.count));
  const row = 24;
  const labelWidth = 220;
  return html`<svg class="bars" viewBox="0 0 ${chartWidth} ${shown.length * row + 4}" role="img" aria-labelledby="reasons-title">
<title id="reasons-title">Refusals by reason: ${shown.map((r) => `${r.reason} ${r.count}`).join(', ')}</title>
${shown.map((reason, i) => {
  const width = (reason.count / max) * (chartWidth - labelWidth - 60);
  return html`<text class="tick" x="${labelWidth - 8}" y="${i * row + 16}" text-anchor="end">${reason.reason.length > 30 ? `${reason.reason.slice(0, 29)}…` : reason.reason}</text>
<rect x="${labelWidth}" y="${i * row + 4}" width="${Math.max(1, width).toFixed(1)}" height="${row - 8}"></rect>
<text class="tick" x="${(labelWidth + width + 6).toFixed(1)}" y="${i * row + 16}">${reason.count}</text>`;
})}
</svg>`;
}

function seriesTable(activity: Activity): SafeHtml {
  const names = Object.keys(seriesLabels) as ActivitySeries[];
  return html`<details><summary>The counts as a table</summary>
<table>
<thead><tr><th scope="col">Interval from (UTC)</th>${names.map((name) => html`<th scope="col">${seriesLabels[name]}</th>`)}</tr></thead>
<tbody>${activity.buckets.map((start, i) => html`<tr><td>${iso(start)}</td>${names.map((name) => html`<td>${activity.series[name][i] ?? 0}</td>`)}</tr>`)}</tbody>
</table></details>`;
}

export function consoleDashboardPage(base: string, session: ConsoleSession, view: DashboardView): SafeHtml {
  const activity = view.activity;
  return consoleShell({
    base,
    session,
    section: 'dashboard',
    title: 'Dashboard',
    body: html`<h1>Dashboard</h1>
<form method="get" action="${base}/console/dashboard" class="search" aria-label="Choose the period">
<div><label for="f-range">Period</label><select id="f-range" name="range">${(Object.keys(dashboardRanges) as DashboardRange[]).map(
      (key) => html`<option value="${key}"${key === view.range ? html` selected` : ''}>${dashboardRanges[key].label}</option>`,
    )}</select></div>
<div class="actions"><button type="submit">Show</button></div>
</form>
${pageOutcome(view)}
${
  activity
    ? html`<p class="muted">From ${iso(activity.since)} to ${iso(activity.until)}, in intervals of ${duration(activity.bucket_seconds * 1000)}, counted from the audit log (every node's).</p>
<h2>Now</h2>
<dl class="status-facts" id="now">
<dt>Approvals waiting</dt><dd>${activity.approvals_waiting}</dd>
<dt>Audit events not sealed yet</dt><dd>${activity.seal.unsealed}${activity.seal.unsealed > 0 ? html`, the oldest ${duration(activity.seal.lag_ms)} old` : ''}</dd>
<dt>Latest signed checkpoint</dt><dd>${activity.seal.last_checkpoint_time === null ? 'none yet' : html`tree size ${activity.seal.tree_size}, signed ${iso(activity.seal.last_checkpoint_time)}`}</dd>
</dl>
${(Object.keys(seriesLabels) as ActivitySeries[]).map(
  (name) => html`<section aria-labelledby="s-${name}"><h2 id="s-${name}">${seriesLabels[name]} <span class="muted">(${total(activity.series[name])})</span></h2>
${barChart(`c-${name}`, seriesLabels[name], activity.buckets, activity.series[name])}
${name === 'refused' && total(activity.refusals_suppressed) > 0 ? html`<p id="suppressed">And ${total(activity.refusals_suppressed)} more over their sources' limits, recorded as counts (<code>audit.refusals_suppressed</code>), not one by one.</p>` : ''}</section>`,
)}
${seriesTable(activity)}
<section aria-labelledby="s-reasons"><h2 id="s-reasons">Refusals by reason</h2>
${
  activity.refusals_by_reason.length === 0
    ? html`<p class="muted">No refusals in this period.</p>`
    : html`${reasonChart(activity.refusals_by_reason)}
<table><thead><tr><th scope="col">Reason</th><th scope="col">Refusals</th></tr></thead>
<tbody>${activity.refusals_by_reason.map((r) => html`<tr><td><code>${r.reason}</code></td><td>${r.count}</td></tr>`)}</tbody></table>`
}</section>
<p class="muted">Rate-limit rejections of each node are in its metrics (<code>/metrics</code>, docs/operations.md), not in the audit log.</p>`
    : ''
}`,
  });
}
