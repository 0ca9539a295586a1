import QRCode from 'qrcode';
import { escapeHtml, SafeHtml } from './html.ts';

/**
 * A QR code as inline SVG, rendered on the server: no script and no image URL, so the page keeps
 * its strict CSP (no `img-src data:`). The SVG is qrcode's own output — shapes only, the text is
 * encoded in path data, never written into the markup — with a role and an accessible name added.
 */
export async function qrSvg(text: string, label: string): Promise<SafeHtml> {
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  if (!svg.startsWith('<svg ')) throw new Error('unexpected QR code output');
  return new SafeHtml(svg.replace('<svg ', `<svg class="qr" role="img" aria-label="${escapeHtml(label)}" `).trim());
}
