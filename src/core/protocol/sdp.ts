/** The few SDP edits signaling needs. */

/** Drops every `a=candidate` and `a=end-of-candidates` line. */
export function withoutCandidates(sdp: string): string {
  return sdp
    .split(/\r?\n/)
    .filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates')
    .join('\r\n');
}

/** Puts `candidates` (full `candidate:…` strings) into the first media section. */
export function withCandidates(sdp: string, candidates: readonly string[]): string {
  const lines = withoutCandidates(sdp).split('\r\n');
  const media = lines.findIndex((l) => l.startsWith('m='));
  if (media < 0) return lines.join('\r\n');
  let end = lines.findIndex((l, i) => i > media && l.startsWith('m='));
  if (end < 0) end = lines.length;
  while (end > media + 1 && lines[end - 1] === '') end--;
  lines.splice(end, 0, ...candidates.map((c) => `a=${c}`), 'a=end-of-candidates');
  return lines.join('\r\n');
}
