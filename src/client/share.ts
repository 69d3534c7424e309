/** The share link (`<gateway>/#dial=<id>`) and its QR code. */
import { renderSVG } from 'uqr';

export function shareLink(id: string): string {
  return `${location.origin}/#dial=${id}`;
}

export function qrSvg(text: string): string {
  return renderSVG(text, { border: 2 });
}

/** The node to dial from a share link, if the page was opened with one. */
export function dialTargetFromLocation(): string | undefined {
  const m = /^#dial=([^&]+)/.exec(location.hash);
  return m?.[1] ? decodeURIComponent(m[1]) : undefined;
}
