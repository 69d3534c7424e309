/**
 * The relaying path (RFC 8656 §11–12): Send indications and ChannelData from clients to their
 * peers, and datagrams from peers back as Data indications or ChannelData, each within the
 * allocation's permissions and the user's bandwidth.
 *
 * A peer that is another allocation on this server (two clients that both relay, the usual
 * case when both sides are behind NATs that need it) gets the datagram handed over here,
 * through the same checks on both sides, instead of a send from one relay socket and a
 * receive on the other: that hop through the kernel was half the server's work per relayed
 * datagram (design.md §7).
 */
import { type TransportAddress, XorPeerAddress } from '../stun/address.ts';
import { AttributeType } from '../stun/attribute.ts';
import { MessageBuilder } from '../stun/builder.ts';
import { StunError } from '../stun/errors.ts';
import { Method, type StunMessage } from '../stun/message.ts';
import { normalIp, type PeerPolicy } from './address-policy.ts';
import type { Allocation } from './allocation.ts';
import type { AllocationManager } from './allocation-manager.ts';
import { type TurnClient, transportOf } from './client.ts';
import { Data } from './codec/attributes.ts';
import { CHANNEL_DATA_HEADER, decodeChannelData } from './codec/channel-data.ts';
import type { Outbox } from './outbox.ts';

/**
 * ChannelData (RFC 8656 §12.4) around a peer's datagram, in a Buffer from Node's pool: no
 * allocation of its own per datagram. `channel` is a bound one (so valid), and a UDP
 * datagram is never longer than the 16-bit length.
 */
function channelData(channel: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(CHANNEL_DATA_HEADER + data.length);
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  out.set(data, CHANNEL_DATA_HEADER);
  return out;
}

export class RelayPath {
  /** The last peer address seen and its normal form: a flow's datagrams come in a row. */
  private lastRaw = '';
  private lastNormal = '';

  constructor(
    private readonly allocations: AllocationManager,
    private readonly outbox: Outbox,
    private readonly now: () => number,
    private readonly rfc5766: boolean,
    /** Whether a Send indication's attributes are all understood. */
    private readonly understood: (m: StunMessage) => boolean,
    private readonly peers: PeerPolicy,
  ) {}

  sendIndication(m: StunMessage, client: TurnClient): void {
    const allocation = this.allocations.get(client);
    if (!allocation) {
      this.outbox.drop('no-allocation');
      return;
    }
    let peer: TransportAddress | undefined;
    let data: Uint8Array | undefined;
    try {
      peer = m.get(XorPeerAddress);
      data = m.get(Data);
    } catch (err) {
      if (err instanceof StunError) {
        this.outbox.drop('malformed');
        return;
      }
      throw err;
    }
    if (!peer || !data || !this.understood(m)) {
      this.outbox.drop('malformed');
      return;
    }
    if (m.has(AttributeType.DONT_FRAGMENT)) {
      this.outbox.drop('unsupported');
      return;
    }
    this.toPeer(allocation, { address: normalIp(peer.address), port: peer.port }, data);
  }

  fromClientChannel(bytes: Uint8Array, client: TurnClient): void {
    const allocation = this.allocations.get(client);
    if (!allocation) {
      this.outbox.drop('no-allocation');
      return;
    }
    let frame: ReturnType<typeof decodeChannelData>;
    try {
      frame = decodeChannelData(bytes, this.rfc5766);
    } catch (err) {
      if (err instanceof StunError) {
        this.outbox.drop('malformed');
        return;
      }
      throw err;
    }
    const peer = allocation.peerOf(frame.channel, this.now());
    if (!peer) {
      this.outbox.drop('no-channel');
      return;
    }
    this.toPeer(allocation, peer, frame.data);
  }

  /** A datagram from a peer to the allocation's relay address (a socket's, or handed over). */
  fromPeer(allocation: Allocation, data: Uint8Array, from: TransportAddress): void {
    const now = this.now();
    if (allocation.expiresAt <= now) {
      this.outbox.drop('no-allocation');
      return;
    }
    const peer = { address: this.normal(from.address), port: from.port };
    if (!allocation.hasPermission(peer.address, now)) {
      this.outbox.drop('no-permission');
      return;
    }
    if (!this.allocations.quotas.spend(allocation.user, data.length, now)) {
      this.outbox.drop('quota');
      return;
    }
    const channel = allocation.channelOf(peer, now);
    const out =
      channel !== undefined
        ? channelData(channel, data)
        : new MessageBuilder(Method.DATA, 'indication')
            .add(XorPeerAddress, peer)
            .add(Data, data)
            .build();
    if (!this.outbox.send(out, allocation.client)) return;
    this.outbox.stats.packetsToClient++;
    this.outbox.stats.bytesToClient += data.length;
    this.outbox.stats.byTransport[transportOf(allocation.client)].bytesToClient += data.length;
  }

  /** normalIp, remembered for the address of the datagram before (it parses and formats). */
  private normal(address: string): string {
    if (address !== this.lastRaw) {
      this.lastRaw = address;
      this.lastNormal = normalIp(address);
    }
    return this.lastNormal;
  }

  private toPeer(allocation: Allocation, peer: TransportAddress, data: Uint8Array): void {
    const now = this.now();
    if (!allocation.hasPermission(peer.address, now) || !this.peers.mayReach(peer)) {
      this.outbox.drop('no-permission');
      return;
    }
    if (!this.allocations.quotas.spend(allocation.user, data.length, now)) {
      this.outbox.drop('quota');
      return;
    }
    // Another allocation here: handed over as if its relay socket had received it.
    const local = this.allocations.atRelayAddress(peer);
    if (local) {
      this.outbox.stats.packetsWithinServer++;
      this.fromPeer(local, data, allocation.relayAddress);
    } else if (!this.outbox.sendFrom(allocation.relay, data, peer)) return;
    this.outbox.stats.packetsToPeer++;
    this.outbox.stats.bytesToPeer += data.length;
    this.outbox.stats.byTransport[transportOf(allocation.client)].bytesToPeer += data.length;
  }
}
