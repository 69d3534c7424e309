/**
 * The presence table of a federation: for each node (and each gateway, which announces
 * itself), the paths each linked peer offers, and the best of them (fewest gateways).
 * Path-vector, as BGP: a path names every gateway it crosses, so one naming us is a loop and
 * is never stored. Bounded in all and per peer, so a peer that floods it cannot grow it.
 */
import type { NodeId } from '../../../core/identity/index.ts';

export interface Route {
  /** The linked peer the route goes through. */
  via: NodeId;
  /** The gateways from the one holding the node (first) to `via` (last). */
  path: readonly NodeId[];
}

export interface RouteLimits {
  maxRoutes: number;
  maxRoutesPerPeer: number;
}

export class RouteTable {
  private readonly routes = new Map<NodeId, Map<NodeId, readonly NodeId[]>>();
  private readonly perPeer = new Map<NodeId, number>();
  private total = 0;
  /** Announcements refused because a bound was reached. */
  refused = 0;

  constructor(private readonly limits: RouteLimits) {}

  get size(): number {
    return this.total;
  }

  /** Nodes with at least one route. */
  get nodes(): IterableIterator<NodeId> {
    return this.routes.keys();
  }

  best(node: NodeId): Route | undefined {
    const offers = this.routes.get(node);
    if (!offers) return undefined;
    let best: Route | undefined;
    for (const [via, path] of offers) {
      // Fewest gateways first; among equals the lower peer ID, so every gateway picks alike.
      if (
        !best ||
        path.length < best.path.length ||
        (path.length === best.path.length && via < best.via)
      )
        best = { via, path };
    }
    return best;
  }

  /** Stores `via`'s path to `node`; true when the best route to `node` changed. */
  set(node: NodeId, via: NodeId, path: readonly NodeId[]): boolean {
    const before = this.best(node);
    let offers = this.routes.get(node);
    const isNew = !offers?.has(via);
    if (isNew) {
      if (
        this.total >= this.limits.maxRoutes ||
        (this.perPeer.get(via) ?? 0) >= this.limits.maxRoutesPerPeer
      ) {
        this.refused++;
        return false;
      }
      this.total++;
      this.perPeer.set(via, (this.perPeer.get(via) ?? 0) + 1);
    }
    if (!offers) {
      offers = new Map();
      this.routes.set(node, offers);
    }
    offers.set(via, path);
    return !sameRoute(before, this.best(node));
  }

  /** Forgets `via`'s path to `node`; true when the best route to `node` changed. */
  remove(node: NodeId, via: NodeId): boolean {
    const offers = this.routes.get(node);
    if (!offers?.has(via)) return false;
    const before = this.best(node);
    offers.delete(via);
    if (offers.size === 0) this.routes.delete(node);
    this.total--;
    const left = (this.perPeer.get(via) ?? 1) - 1;
    if (left <= 0) this.perPeer.delete(via);
    else this.perPeer.set(via, left);
    return !sameRoute(before, this.best(node));
  }

  /** Forgets everything `via` offered (its link went down); the nodes whose best route changed. */
  removePeer(via: NodeId): NodeId[] {
    const changed: NodeId[] = [];
    for (const node of [...this.routes.keys()]) if (this.remove(node, via)) changed.push(node);
    return changed;
  }

  clear(): void {
    this.routes.clear();
    this.perPeer.clear();
    this.total = 0;
  }
}

function sameRoute(a: Route | undefined, b: Route | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.via === b.via && a.path.length === b.path.length && a.path.every((g, i) => g === b.path[i])
  );
}
