/**
 * Listeners by event type, for the objects that stand in for platform ones across a port
 * (PortDataChannel, RemotePeerConnection): the core calls addEventListener on them as it
 * would on an RTCDataChannel or RTCPeerConnection.
 */
/** A listener of some event type; each type has its own event shape. */
type AnyListener = (ev: never) => void;

export class Listeners {
  private readonly byType = new Map<string, Set<AnyListener>>();

  add(type: string, listener: AnyListener): void {
    let set = this.byType.get(type);
    if (!set) {
      set = new Set();
      this.byType.set(type, set);
    }
    set.add(listener);
  }

  remove(type: string, listener: AnyListener): void {
    this.byType.get(type)?.delete(listener);
  }

  /** Calls each listener of `type`; one added or removed meanwhile counts from the next. */
  emit(type: string, ev: unknown): void {
    for (const listener of [...(this.byType.get(type) ?? [])])
      (listener as (ev: unknown) => void)(ev);
  }
}
