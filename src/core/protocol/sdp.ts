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

/** The `a=candidate` lines of a description, each with its media section's mid and index. */
export function candidatesOf(
  sdp: string,
): { candidate: string; sdpMid: string | null; sdpMLineIndex: number }[] {
  const found: { candidate: string; sdpMid: string | null; sdpMLineIndex: number }[] = [];
  let index = -1;
  let mid: string | null = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      index++;
      mid = null;
    } else if (line.startsWith('a=mid:')) mid = line.slice('a=mid:'.length);
    else if (line.startsWith('a=candidate:') && index >= 0)
      found.push({ candidate: line.slice('a='.length), sdpMid: mid, sdpMLineIndex: index });
  }
  return found;
}
