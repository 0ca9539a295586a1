import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { escapeHtml, html, SafeHtml } from '../../src/ui/html.ts';

describe('HTML templates', () => {
  test('escapes & < > " \' and ` in interpolated text', () => {
    assert.equal(escapeHtml(`<script>alert("x" + 'y' + \`z\`)</script> & more`), '&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39; + &#96;z&#96;)&lt;/script&gt; &amp; more');
    assert.equal(html`<p title="${'" onmouseover="x'}">${'<b>'}</p>`.toString(), '<p title="&quot; onmouseover=&quot;x">&lt;b&gt;</p>');
  });

  test('keeps nested templates as HTML and escapes the text inside them', () => {
    const items = ['<i>one</i>', 'two & three'];
    const list = html`<ul>${items.map((item) => html`<li>${item}</li>`)}</ul>`;
    assert.ok(list instanceof SafeHtml);
    assert.equal(list.toString(), '<ul><li>&lt;i&gt;one&lt;/i&gt;</li><li>two &amp; three</li></ul>');
  });

  test('renders nothing for null, undefined and false, and numbers as text', () => {
    assert.equal(html`${null}${undefined}${false}${0}${42}`.toString(), '042');
  });

  test('does not treat a plain object that looks like SafeHtml as HTML', () => {
    const forged = { toString: () => '<script>x</script>' } as unknown as string;
    assert.equal(html`${forged}`.toString(), '&lt;script&gt;x&lt;/script&gt;');
  });
});
