/**
 * Gateway election among the devices of a LAN that may serve (`--may-serve`): when no gateway
 * has been heard for a while, such a device starts one in its own process, by a rule that
 * keeps two from starting at once:
 *
 *   1. wait QUIET_MS plus a random backoff after the last gateway was heard, saying meanwhile
 *      "I would start" (a signed candidacy);
 *   2. defer to any candidate with a lower node ID (for at most DEFER_MAX_MS: a candidate that
 *      never starts does not stall the LAN);
 *   3. ask the LAN once more; start only if still nobody answers.
 *
 * Should two gateways still meet (a race, or two LANs joined), the one with the higher gateway
 * ID steps down (says bye and stops); its sessions end and their nodes reconnect, locating the
 * winner. Everyone sees the same announcements, so everyone agrees on the winner.
 */
import type { NodeIdentity } from '../../core/identity/index.ts';
import { type Logger, silentLogger } from '../../core/node/logger.ts';
import type { HeardGateway, LanDiscovery } from './lan-discovery.ts';

/** A gateway this process runs. */
export interface ServedGateway {
  readonly identity: NodeIdentity;
  readonly url: string;
  /** Its data directory (its key and DTLS certificate). */
  readonly dataDir: string;
  stop(): Promise<void>;
}

export interface GatewayElectionOptions {
  discovery: LanDiscovery;
  /** This device's node identity (its candidacy). */
  identity: NodeIdentity;
  /** The gateways heard that are not known to fail (default: all heard). */
  gateways?: () => HeardGateway[];
  /**
   * Whether a rival gateway works and is who it says (a session with it): a device steps down
   * only for one that does, or anyone could silence the LAN with one signed announcement.
   */
  provesItself: (gateway: HeardGateway, own: ServedGateway) => Promise<boolean>;
  /** A rival that did not prove itself (not to be checked again for a while). */
  onUnproven?: (gateway: HeardGateway) => void;
  /** Starts the embedded gateway. */
  startGateway: () => Promise<ServedGateway>;
  logger?: Logger;
  signal?: AbortSignal;
  /** Called when this device starts or stops serving. */
  onServing?: (gateway: ServedGateway | undefined) => void;
}

const TICK_MS = 500;
/** No gateway heard for this long (beyond GATEWAY_FRESH_MS of silence): time to elect. */
export const QUIET_MS = 1500;
const BACKOFF_MAX_MS = 1500;
const DEFER_MAX_MS = 8000;
const RECHECK_MS = 600;

export class GatewayElection {
  private serving: { gateway: ServedGateway; withdraw: () => Promise<void> } | undefined;
  private quietSince: number | undefined;
  private startAt: number | undefined;
  private busy = false;
  private readonly timer: ReturnType<typeof setInterval>;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly options: GatewayElectionOptions) {
    this.log = options.logger ?? silentLogger;
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  private heard(): HeardGateway[] {
    return this.options.gateways?.() ?? this.options.discovery.gateways();
  }

  /** The gateway this device serves now, if it does. */
  get gateway(): ServedGateway | undefined {
    return this.serving?.gateway;
  }

  private async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      await (this.serving ? this.checkRival() : this.maybeStart());
    } catch (err) {
      this.log.warn(`gateway election: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  /** Serving: step down for a gateway with a lower ID. */
  private async checkRival(): Promise<void> {
    const own = this.serving;
    if (!own) return;
    const winner = this.heard()[0];
    if (!winner || winner.id >= own.gateway.identity.id) return;
    if (!(await this.options.provesItself(winner, own.gateway))) {
      this.log.warn(`a gateway announced on this LAN does not work: ${winner.id} at ${winner.url}`);
      this.options.onUnproven?.(winner);
      return;
    }
    if (this.serving !== own) return;
    this.log.info(`another gateway serves this LAN (${winner.id} at ${winner.url}): stepping down`);
    await this.stepDown();
  }

  private async maybeStart(): Promise<void> {
    const { discovery, identity } = this.options;
    const now = Date.now();
    if (this.heard().length) {
      this.quietSince = undefined;
      this.startAt = undefined;
      return;
    }
    this.quietSince ??= now;
    this.startAt ??= now + QUIET_MS + Math.random() * BACKOFF_MAX_MS;
    await discovery.announceCandidacy(identity);
    if (now < this.startAt) return;
    const lower = discovery.candidateIds().filter((id) => id < identity.id);
    if (lower.length && now - this.quietSince < DEFER_MAX_MS) return;
    await discovery.query(undefined, RECHECK_MS);
    if (this.heard().length || this.stopped) return;
    this.log.info('no gateway answers on this LAN: starting one');
    const gateway = await this.options.startGateway();
    if (this.stopped) {
      await gateway.stop();
      return;
    }
    const withdraw = await discovery.announceGateway(gateway.identity, gateway.url);
    this.serving = { gateway, withdraw };
    this.quietSince = undefined;
    this.startAt = undefined;
    this.log.info(`serving as this LAN's gateway ${gateway.identity.id} at ${gateway.url}`);
    this.options.onServing?.(gateway);
  }

  private async stepDown(): Promise<void> {
    const own = this.serving;
    if (!own) return;
    this.serving = undefined;
    await own.withdraw();
    this.options.onServing?.(undefined);
    await own.gateway.stop();
  }

  /** Stops electing; stops this device's gateway if it serves (saying bye first). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.stepDown();
  }
}
