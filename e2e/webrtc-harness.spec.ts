/**
 * Proves the harness is WebRTC-ready: two pages in two browser contexts open a data channel
 * to each other, signaling through the test itself, and exchange messages.
 */
import type { Page } from '@playwright/test';
import { expect, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';

type Win = Window & {
  pc?: RTCPeerConnection;
  dc?: RTCDataChannel;
  received?: string[];
  onChannel?: (dc: RTCDataChannel) => void;
};

async function gatheredDescription(page: Page): Promise<RTCSessionDescriptionInit> {
  return page.evaluate(async () => {
    const w = window as Win;
    const pc = w.pc as RTCPeerConnection;
    if (pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') resolve();
        });
      });
    }
    return (pc.localDescription as RTCSessionDescription).toJSON();
  });
}

test('two browser contexts open a data channel to each other', async ({ browser, baseURL }) => {
  const contexts = [
    await browser.newContext({ permissions: PERMISSIONS }),
    await browser.newContext({ permissions: PERMISSIONS }),
  ];
  const [a, b] = (await Promise.all(
    contexts.map(async (c) => {
      const page = await c.newPage();
      await page.goto(baseURL ?? '/');
      return page;
    }),
  )) as [Page, Page];

  // Each page gets a peer connection that records what its data channel receives.
  const listen = () => {
    const w = window as Win;
    w.received = [];
    w.pc = new RTCPeerConnection();
    w.onChannel = (dc) => {
      w.dc = dc;
      dc.onmessage = (e) => w.received?.push(String(e.data));
    };
    w.pc.ondatachannel = (e) => w.onChannel?.(e.channel);
  };
  await a.evaluate(listen);
  await b.evaluate(listen);

  await a.evaluate(async () => {
    const w = window as Win;
    const pc = w.pc as RTCPeerConnection;
    w.onChannel?.(pc.createDataChannel('hello'));
    await pc.setLocalDescription();
  });
  const offer = await gatheredDescription(a);
  expect(offer.sdp).toMatch(/a=candidate:.* typ host/);
  await b.evaluate(async (sdp) => {
    const pc = (window as Win).pc as RTCPeerConnection;
    await pc.setRemoteDescription(sdp);
    await pc.setLocalDescription();
  }, offer);
  const answer = await gatheredDescription(b);
  await a.evaluate(async (sdp) => (window as Win).pc?.setRemoteDescription(sdp), answer);

  const open = (page: Page) =>
    page.waitForFunction(() => (window as Win).dc?.readyState === 'open', undefined, {
      timeout: 60_000,
    });
  await Promise.all([open(a), open(b)]);
  await a.evaluate(() => (window as Win).dc?.send('hello from A'));
  await b.evaluate(() => (window as Win).dc?.send('hello from B'));
  await expect.poll(() => b.evaluate(() => (window as Win).received)).toEqual(['hello from A']);
  await expect.poll(() => a.evaluate(() => (window as Win).received)).toEqual(['hello from B']);

  const pairTypes = await a.evaluate(async () => {
    const stats = await ((window as Win).pc as RTCPeerConnection).getStats();
    let pair: { localCandidateId?: string; remoteCandidateId?: string } | undefined;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId)
        pair = stats.get(s.selectedCandidatePairId);
    });
    return [
      stats.get(pair?.localCandidateId ?? '')?.candidateType,
      stats.get(pair?.remoteCandidateId ?? '')?.candidateType,
    ];
  });
  expect(pairTypes).toEqual(['host', 'host']);
  for (const c of contexts) await c.close();
});
