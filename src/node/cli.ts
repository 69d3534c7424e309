/**
 * `rtcmesh`: the gateway and node tools.
 *   rtcmesh gateway [--listen HOST:PORT] [--data DIR] [--public-url URL] [--redis URL] …
 *   rtcmesh id [--data DIR]
 */
import { parseArgs } from 'node:util';
import { parseNodeId, parsePeerName } from '../core/identity/index.ts';
import { GatewayConnectError } from '../core/node/errors.ts';
import type { AcceptPolicy } from '../core/node/mesh-node.ts';
import { VERSION } from '../core/version.ts';
import {
  type CliNodeOptions,
  DEFAULT_NODE_DATA,
  runDial,
  runExpose,
  runForward,
  runListen,
  runNode,
  runPeers,
  stderrLogger,
} from './cli-node.ts';
import { LanDiscovery } from './discovery/lan-discovery.ts';
import { federateWithLan } from './discovery/lan-federation.ts';
import {
  ConfigError,
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN,
  DEFAULT_TLS_LISTEN,
  DEFAULT_TLS_PLAIN_LISTEN,
  DEFAULT_UDP_PORT,
  defaultConfig,
  type GatewayConfig,
  isWildcard,
  parseDomain,
  parseDuration,
  parseIpAddress,
  parseListen,
  parsePublicUrl,
  parseRedisUrl,
  parseTurnUrl,
  setLimit,
} from './gateway/config.ts';
import { parsePeerUrl } from './gateway/federation/federation.ts';
import { Gateway } from './gateway/gateway.ts';
import { LETS_ENCRYPT_DIRECTORY } from './gateway/tls/acme.ts';
import { loadOrCreateIdentity } from './identity-store.ts';
import { MAX_KNOWN_PEERS } from './known-peers.ts';
import { DEFAULT_APP_PORT, startLocalApp } from './local-app.ts';
import { createLogger, isLogLevel, LOG_LEVELS } from './log.ts';
import { DEFAULT_PRESENCE_TTL_MS, DEFAULT_REDIS_PREFIX } from './registry/index.ts';
import { redactUrl } from './registry/redis-registry.ts';
import { PeerNetworks } from './turn/address-policy.ts';

const COMMANDS = `rtcmesh ${VERSION}: a private mesh over WebRTC

Usage:
  rtcmesh gateway [options]         run a gateway serving the PWA and the API
  rtcmesh id [--data DIR]           print a node ID and mesh IPv6 (made on first use)
  rtcmesh node [node options]       stay online as a mesh node (listing the peers it knows)
  rtcmesh peers [--data DIR]        list the peers this node has linked with (kept on disk,
                                    each record checked again; no gateway needed)
  rtcmesh listen SERVICE [--exec CMD] [node options]
                                    serve SERVICE: pipe each stream to stdio, or run CMD per stream
  rtcmesh dial PEER SERVICE [node options]
                                    pipe stdin/stdout through a stream to PEER (node ID or mesh IPv6)
  rtcmesh expose SERVICE HOST:PORT [--http] [node options]
                                    serve SERVICE from a TCP port: each stream becomes a connection
  rtcmesh forward [BIND:]PORT PEER SERVICE [node options]
                                    each connection to a local port becomes a stream to PEER's SERVICE
  rtcmesh app [--port PORT] [--may-serve] [--data DIR]
                                    the app for a browser on this device, with no internet: serves
                                    it on http://localhost:PORT, linked to the LAN's gateway
  rtcmesh --version | --help
`;

const NODE_OPTIONS = `Node options (flag, environment variable, default):
  --gateway URL        RTCMESH_GATEWAY      none: find a gateway on the LAN by multicast (each
                                            must prove the ID it announces)
  --may-serve          RTCMESH_MAY_SERVE=1  with no --gateway: run the LAN's gateway in this
                                            process when none answers (a powered device)
  --data DIR           RTCMESH_NODE_DATA    ${DEFAULT_NODE_DATA}
  --accept POLICY      RTCMESH_ACCEPT       everyone for listen and expose, known otherwise
                                            (everyone, known or ask; a terminal cannot ask,
                                            so ask declines)
  --known ID           (repeatable)         peers the known policy accepts
  --name NAME                               a name peers see in your record
  --signaling MODE     RTCMESH_SIGNALING    auto  (the WebRTC session with the gateway, HTTPS when it
                                            cannot be made, e.g. UDP blocked; session; or http only)
`;

const GATEWAY_OPTIONS = `Gateway options (flag, environment variable, default):
  --listen HOST:PORT   RTCMESH_LISTEN       ${DEFAULT_LISTEN}; with TLS ${DEFAULT_TLS_PLAIN_LISTEN}  (plain HTTP and
                                            TURN over TCP; with TLS: ACME challenges, redirect to https)
  --tls-listen H:P     RTCMESH_TLS_LISTEN   ${DEFAULT_TLS_LISTEN}  (with TLS: HTTPS and TURN over TLS, one port)
  --tls-cert FILE      RTCMESH_TLS_CERT     none: PEM certificate (chain) for the TLS port, re-read
  --tls-key FILE       RTCMESH_TLS_KEY      none: its PEM key        when either file changes
  --domain NAME        RTCMESH_DOMAIN       none: get a certificate for NAME from an ACME CA (http-01 on
                                            the plain port), keep it in the data directory, renew it
  --acme-email ADDR    RTCMESH_ACME_EMAIL   none: the ACME account's contact (needed with --domain)
  --acme-directory URL RTCMESH_ACME_DIRECTORY  Let's Encrypt  (another ACME CA's directory URL)
  --data DIR           RTCMESH_DATA         ${DEFAULT_DATA_DIR}
  --public-url URL     RTCMESH_PUBLIC_URL   http://<listen address>
  --pwa-dir DIR        RTCMESH_PWA_DIR      the PWA built beside this program (dist/pwa)
  --udp HOST:PORT      RTCMESH_UDP          <listen host>:${DEFAULT_UDP_PORT}  (WebRTC for every node)
  --public-ip IP       RTCMESH_PUBLIC_IP    the --udp host  (the address nodes reach)
  --registry KIND      RTCMESH_REGISTRY     sqlite  (in the data directory; or memory)
  --redis URL          RTCMESH_REDIS        none: cluster mode, registry and signaling on this Redis
                                            (redis://host:port); gateways on one Redis are one mesh
  --redis-prefix P     RTCMESH_REDIS_PREFIX rtcmesh:  (keys and channels; one cluster per prefix)
  --dial-timeout TIME  RTCMESH_DIAL_TIMEOUT 60s  (how long a call may ring)
  --limit NAME=VALUE   (repeatable)         any of the limits in the README, e.g. maxSessions=5000
  --turn HOST:PORT     RTCMESH_TURN         the --udp host, its port + 1  (STUN/TURN relay)
  --turn-secret S      RTCMESH_TURN_SECRET  kept in the data directory as turn-secret
  --turn-url URL       RTCMESH_TURN_URL     none: an external TURN server (coturn, same secret)
  --turn-relay-ip IP   RTCMESH_TURN_RELAY_IP  the TURN host  (where relayed traffic goes out)
  --turn-allow-private RTCMESH_TURN_ALLOW_PRIVATE=1  relay to loopback and private peers too
  --turn-rfc5766-channels  RTCMESH_TURN_RFC5766_CHANNELS=1  let old clients bind channels 0x5000–0x7FFF
  --turn-peer-net CIDR RTCMESH_TURN_PEER_NET=CIDR,…  relay to this private network although private
                       (repeatable)         peers are refused: the backbone of federated gateways' relays
  --turn-transit L=R   (repeatable)         TURN chaining: a transit relay for peer gateways' nodes,
                                            listening on L (facing a peer), relaying from R
  --peer URL           RTCMESH_PEERS=URL,…  federation without Redis: link to this gateway (http(s)://…,
                       (repeatable)         #<gateway ID> at the end pins which one); implies --federate
  --federate           RTCMESH_FEDERATE=1   accept federation links other gateways open
  --peer-allow ID      (repeatable)         only these gateways may link (default: any that proves its ID)
  --push-allow-private RTCMESH_PUSH_ALLOW_PRIVATE=1  send Web Push to loopback, private and plain-http
                                            endpoints too (a local push service in tests)
  --trust-proxy        RTCMESH_TRUST_PROXY=1  behind a reverse proxy: per-address limits use the
                                            last X-Forwarded-For address
  --allow ID           RTCMESH_ALLOW=ID,…   private mesh: only these node IDs may connect, register
                       (repeatable)         and dial (default: anyone)
  --log-level LEVEL    RTCMESH_LOG_LEVEL    info  (fatal, error, warn, info, debug, trace, silent)
  --log-format F       RTCMESH_LOG_FORMAT   pretty on a terminal, json otherwise  (logs go to stderr)
  --announce           RTCMESH_ANNOUNCE=1   announce this gateway on the LAN by multicast, for
                                            nodes started without --gateway
`;

const APP_HELP = `Usage: rtcmesh app [--port PORT] [--may-serve] [--data DIR]

For a browser on this device when the LAN has no internet (a browser cannot find a gateway by
multicast, and its app needs a secure origin). Serves the app and a gateway of its own on
http://localhost:PORT (127.0.0.1 and ::1 only, never the LAN; its WebRTC port is on this
host's LAN address), and links that gateway to the gateways found on the LAN, each proving its
ID by its signed record. Open the URL it prints: the page connects with no configuration, and
dials nodes on the LAN by ID (and they dial it).

  --port PORT          RTCMESH_APP_PORT     ${DEFAULT_APP_PORT}
  --may-serve          RTCMESH_MAY_SERVE=1  also run the LAN's gateway in this process when none
                                            answers (a powered device)
  --data DIR           RTCMESH_NODE_DATA    ${DEFAULT_NODE_DATA}
  --udp IP             RTCMESH_APP_UDP      127.0.0.1  (the browser's WebRTC session and TURN; a
                                            LAN address if a browser cannot pair with loopback)
  --pwa-dir DIR        RTCMESH_PWA_DIR      the PWA built beside this program (dist/pwa)
`;

const USAGE = `${COMMANDS}\n${NODE_OPTIONS}\n${GATEWAY_OPTIONS}`;

/** `rtcmesh COMMAND --help`: that command's usage and options. */
const HELP: Record<string, string> = {
  app: APP_HELP,
  gateway: `Usage: rtcmesh gateway [options]\n\nRuns a gateway: serves the PWA and the API, WebRTC for every node, a STUN/TURN relay.\n\n${GATEWAY_OPTIONS}`,
  id: "Usage: rtcmesh id [--data DIR]\n\nPrints this node's ID and mesh IPv6 address, making its key on first use.\n\n  --data DIR           RTCMESH_DATA         ./data\n",
  peers: `Usage: rtcmesh peers [--data DIR]\n\nLists the peers this node has linked with, the most recent first: ID, mesh IPv6, when last\nlinked, name. They are kept in known-peers.json in the data directory (the ${MAX_KNOWN_PEERS} most recent);\neach signed record is checked again when read, and one that fails is refused and left out.\n\n  --data DIR           RTCMESH_NODE_DATA    ${DEFAULT_NODE_DATA}\n`,
  node: `Usage: rtcmesh node [node options]\n\nStays online as a mesh node (accepting calls by the accept policy).\n\n${NODE_OPTIONS}`,
  listen: `Usage: rtcmesh listen SERVICE [--exec CMD] [node options]\n\nServes SERVICE: pipes each incoming stream to stdin/stdout, or runs CMD per stream.\n\n${NODE_OPTIONS}`,
  dial: `Usage: rtcmesh dial PEER SERVICE [node options]\n\nPipes stdin/stdout through a stream to PEER's SERVICE (PEER: node ID or mesh IPv6).\nAs an SSH ProxyCommand, against \`rtcmesh expose ssh 127.0.0.1:22\` on the device:\n  ssh -o ProxyCommand='rtcmesh dial %h ssh' user@PEER\n\n${NODE_OPTIONS}`,
  expose: `Usage: rtcmesh expose SERVICE HOST:PORT [--http] [--max-connections N] [node options]

Serves SERVICE from a TCP port: each stream a peer opens to SERVICE becomes a TCP connection
to HOST:PORT (half closes and resets carried both ways). Peers reach it with
\`rtcmesh forward PORT THIS-NODE SERVICE\` or \`rtcmesh dial THIS-NODE SERVICE\`.

  --http               HOST:PORT is an HTTP server: the app can open it from the connection's
                       panel (its requests are made with node:http; plain TCP streams still work)
  --max-connections N  connections open at once; more streams are refused (default 256)

${NODE_OPTIONS}`,
  forward: `Usage: rtcmesh forward [BIND:]PORT PEER SERVICE [--max-connections N] [node options]

Listens on BIND:PORT (default 127.0.0.1): each TCP connection becomes its own stream to PEER's
SERVICE (PEER: node ID or mesh IPv6), served there by \`rtcmesh expose\`. Each connection dials
anew, so a peer that restarts is reached again by the next connection.

  --max-connections N  connections open at once; more are reset (default 256)

${NODE_OPTIONS}`,
};

function fail(message: string, code = 2): never {
  console.error(`rtcmesh: ${message}`);
  process.exit(code);
}

/** Said before connecting: a typo in PEER is not worth a wait for the gateway. */
function checkPeer(peer: string): void {
  if (!parsePeerName(peer))
    fail(`"${peer}" is neither a node ID (52 characters) nor a mesh IPv6 address`);
}

/** --peer, --federate, --peer-allow, --turn-peer-net and --turn-transit (docs/design.md §9). */
function readFederationOptions(
  config: GatewayConfig,
  values: {
    peer?: string[];
    federate?: boolean;
    'peer-allow'?: string[];
    'turn-peer-net'?: string[];
    'turn-transit'?: string[];
  },
  env: NodeJS.ProcessEnv,
): void {
  const list = (flag: string[] | undefined, variable: string | undefined) => [
    ...(flag ?? []),
    ...(variable ?? '').split(/[\s,]+/).filter(Boolean),
  ];
  const peers = list(values.peer, env.RTCMESH_PEERS);
  for (const peer of peers) {
    try {
      parsePeerUrl(peer);
    } catch (err) {
      throw new ConfigError(`--peer: ${(err as Error).message}`);
    }
  }
  config.federation.peers = peers;
  const federate = env.RTCMESH_FEDERATE;
  config.federation.accept =
    peers.length > 0 || values.federate === true || federate === '1' || federate === 'true';
  const allowed = values['peer-allow'] ?? [];
  if (allowed.length) {
    config.federation.allow = new Set(
      allowed.map((text) => {
        const id = parseNodeId(text);
        if (!id) throw new ConfigError(`--peer-allow takes gateway IDs, not "${text}"`);
        return id;
      }),
    );
  }
  if (config.redis && (peers.length || config.federation.accept))
    throw new ConfigError('--peer and --federate link gateways without Redis: leave out --redis');
  const nets = list(values['turn-peer-net'], env.RTCMESH_TURN_PEER_NET);
  try {
    new PeerNetworks(nets);
  } catch (err) {
    throw new ConfigError(`--turn-peer-net: ${(err as Error).message}`);
  }
  config.turn.peerNetworks = nets;
  config.turn.transit = (values['turn-transit'] ?? []).map((text) => {
    const [listen = '', relay = '', ...rest] = text.split('=');
    if (rest.length || !listen || !relay)
      throw new ConfigError(`--turn-transit takes LISTEN_IP=RELAY_IP, not "${text}"`);
    return {
      listen: parseIpAddress(listen, '--turn-transit'),
      relay: parseIpAddress(relay, '--turn-transit'),
    };
  });
}

async function runGateway(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      listen: { type: 'string' },
      'tls-listen': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      domain: { type: 'string' },
      'acme-email': { type: 'string' },
      'acme-directory': { type: 'string' },
      data: { type: 'string' },
      'public-url': { type: 'string' },
      'pwa-dir': { type: 'string' },
      udp: { type: 'string' },
      'public-ip': { type: 'string' },
      registry: { type: 'string' },
      redis: { type: 'string' },
      'redis-prefix': { type: 'string' },
      'dial-timeout': { type: 'string' },
      limit: { type: 'string', multiple: true },
      turn: { type: 'string' },
      'turn-secret': { type: 'string' },
      'turn-url': { type: 'string' },
      'turn-relay-ip': { type: 'string' },
      'turn-allow-private': { type: 'boolean' },
      'turn-rfc5766-channels': { type: 'boolean' },
      'push-allow-private': { type: 'boolean' },
      'trust-proxy': { type: 'boolean' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      allow: { type: 'string', multiple: true },
      'turn-peer-net': { type: 'string', multiple: true },
      'turn-transit': { type: 'string', multiple: true },
      peer: { type: 'string', multiple: true },
      federate: { type: 'boolean' },
      'peer-allow': { type: 'string', multiple: true },
      announce: { type: 'boolean' },
    },
    strict: true,
  });
  const env = process.env;
  const config = defaultConfig();
  readTlsOptions(config, values, env);
  const listen = values.listen ?? env.RTCMESH_LISTEN;
  if (listen) config.listen = parseListen(listen);
  else if (config.tls) config.listen = parseListen(DEFAULT_TLS_PLAIN_LISTEN);
  config.dataDir = values.data ?? env.RTCMESH_DATA ?? config.dataDir;
  const publicUrl = values['public-url'] ?? env.RTCMESH_PUBLIC_URL;
  if (publicUrl) config.publicUrl = parsePublicUrl(publicUrl);
  config.pwaDir = values['pwa-dir'] ?? env.RTCMESH_PWA_DIR ?? config.pwaDir;
  const udp = values.udp ?? env.RTCMESH_UDP;
  config.udp = udp
    ? parseListen(udp, '--udp')
    : { host: config.listen.host, port: DEFAULT_UDP_PORT };
  config.publicIp = values['public-ip'] ?? env.RTCMESH_PUBLIC_IP;
  if (!config.publicIp && (config.udp.host === '0.0.0.0' || config.udp.host === '::')) {
    throw new ConfigError('--udp on all interfaces needs --public-ip: the address nodes can reach');
  }
  const registry = values.registry ?? env.RTCMESH_REGISTRY ?? 'sqlite';
  if (registry !== 'sqlite' && registry !== 'memory')
    throw new ConfigError(`--registry must be sqlite or memory, not "${registry}"`);
  config.registry = registry;
  const redis = values.redis ?? env.RTCMESH_REDIS;
  if (redis) {
    if (values.registry ?? env.RTCMESH_REGISTRY)
      throw new ConfigError('--redis keeps the registry on Redis: leave out --registry');
    config.redis = {
      url: parseRedisUrl(redis),
      prefix: values['redis-prefix'] ?? env.RTCMESH_REDIS_PREFIX ?? DEFAULT_REDIS_PREFIX,
      presenceTtlMs: DEFAULT_PRESENCE_TTL_MS,
    };
  }
  const dialTimeout = values['dial-timeout'] ?? env.RTCMESH_DIAL_TIMEOUT;
  if (dialTimeout) config.limits.dialTimeoutMs = parseDuration(dialTimeout, '--dial-timeout');
  for (const setting of values.limit ?? []) setLimit(config.limits, setting, config.turn.limits);
  readTurnOptions(config, values, env);
  readFederationOptions(config, values, env);
  const pushAllowPrivate = env.RTCMESH_PUSH_ALLOW_PRIVATE;
  config.push.allowPrivateEndpoints =
    values['push-allow-private'] === true ||
    pushAllowPrivate === '1' ||
    pushAllowPrivate === 'true';
  const trustProxy = env.RTCMESH_TRUST_PROXY;
  config.trustProxy = values['trust-proxy'] === true || trustProxy === '1' || trustProxy === 'true';
  const allowed = [
    ...(values.allow ?? []),
    ...(env.RTCMESH_ALLOW ?? '').split(/[\s,]+/).filter(Boolean),
  ];
  if (allowed.length) {
    const ids = allowed.map((text) => {
      const id = parseNodeId(text.trim());
      if (!id)
        throw new ConfigError(`--allow takes node IDs (52 base32 characters), not "${text}"`);
      return id;
    });
    config.allow = new Set(ids);
  }
  const level = values['log-level'] ?? env.RTCMESH_LOG_LEVEL ?? 'info';
  if (!isLogLevel(level))
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`);
  const format = values['log-format'] ?? env.RTCMESH_LOG_FORMAT;
  if (format !== undefined && format !== 'json' && format !== 'pretty')
    throw new ConfigError(`--log-format must be json or pretty, not "${format}"`);
  const logger = createLogger({ level, ...(format ? { format } : {}) });
  const gateway = await Gateway.start(config, { logger });
  // The last resort: an error that escaped every handler is logged and counted, and the
  // gateway keeps serving everyone else (one bad request must not end every session).
  process.on('unhandledRejection', (err) => gateway.fault('unhandled-rejection', err));
  process.on('uncaughtException', (err) => gateway.fault('uncaught-exception', err));
  const turn = gateway.turnAddress
    ? `, TURN on udp ${gateway.turnAddress}`
    : `, TURN at ${config.turn.url}`;
  const announce = values.announce === true || isSet(env.RTCMESH_ANNOUNCE);
  if (announce && /^http:\/\/(127\.|\[::1\]|localhost)/.test(gateway.publicUrl))
    console.error(
      `rtcmesh: --announce with ${gateway.publicUrl}: other devices cannot reach a loopback address (give --listen or --public-url a LAN address)`,
    );
  const lan = announce ? await LanDiscovery.start() : undefined;
  const withdraw = await lan?.announceGateway(gateway.identity, gateway.publicUrl);
  // Two gateways that meet on a LAN federate when both accept federation (--federate or
  // --peer): each links to the other it hears, pinned to the ID its announcement proved.
  if (lan && gateway.federation && config.federation.accept)
    federateWithLan(lan, gateway.federation, gateway.identity.id, config.federation.peers, {
      warn: (message) => console.error(`rtcmesh: ${message}`),
    });
  // TURN over TCP on the plain HTTP port, over TLS on the TLS port (the front door).
  const streams = gateway.turnAddress
    ? `, TURN over tcp port ${gateway.plainPort}${gateway.tlsPort !== undefined ? `, over tls port ${gateway.tlsPort}` : ''}`
    : '';
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`rtcmesh gateway stopping (${signal})`);
    Promise.resolve(withdraw?.())
      .then(() => lan?.close())
      .then(() => gateway.stop())
      .then(
        () => process.exit(0),
        (err: unknown) => fail(`shutdown failed: ${String(err)}`, 1),
      );
  };
  // Before saying it listens: whoever waits for that line may signal at once.
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  console.log(
    `rtcmesh gateway ${gateway.identity.id} listening on ${gateway.publicUrl}, WebRTC on udp ${config.publicIp ?? config.udp.host}:${gateway.udpPort}${turn} (data in ${config.dataDir})${streams}${config.redis ? `, in the cluster on ${redactUrl(config.redis.url)}` : ''}${lan ? ', announced on the LAN' : ''}`,
  );
}

type OptionValues = Record<string, string | boolean | string[] | undefined>;

/** Reads a text option: its flag, else its environment variable (an empty one is unset). */
function optionText(values: OptionValues, env: NodeJS.ProcessEnv) {
  return (flag: string, variable: string): string | undefined => {
    const v = values[flag];
    return typeof v === 'string' ? v : env[variable] || undefined;
  };
}

function readTlsOptions(config: GatewayConfig, values: OptionValues, env: NodeJS.ProcessEnv): void {
  const text = optionText(values, env);
  const certFile = text('tls-cert', 'RTCMESH_TLS_CERT');
  const keyFile = text('tls-key', 'RTCMESH_TLS_KEY');
  const domain = text('domain', 'RTCMESH_DOMAIN');
  const email = text('acme-email', 'RTCMESH_ACME_EMAIL');
  const directory = text('acme-directory', 'RTCMESH_ACME_DIRECTORY');
  const tlsListen = text('tls-listen', 'RTCMESH_TLS_LISTEN');
  if (!certFile && !keyFile && !domain) {
    if (email || directory || tlsListen)
      throw new ConfigError(
        '--acme-email, --acme-directory and --tls-listen need --domain or --tls-cert/--tls-key',
      );
    return;
  }
  if ((certFile || keyFile) && domain)
    throw new ConfigError('use --tls-cert/--tls-key or --domain (ACME), not both');
  if (!domain && (!certFile || !keyFile))
    throw new ConfigError('--tls-cert and --tls-key go together');
  if (domain && !email)
    throw new ConfigError('--domain needs --acme-email (the ACME account contact)');
  let directoryUrl = LETS_ENCRYPT_DIRECTORY;
  if (directory) {
    try {
      directoryUrl = new URL(directory).href;
    } catch {
      throw new ConfigError(`--acme-directory must be a URL, not "${directory}"`);
    }
  }
  config.tls = {
    listen: parseListen(tlsListen ?? DEFAULT_TLS_LISTEN, '--tls-listen'),
    files: certFile && keyFile ? { certFile, keyFile } : undefined,
    acme: domain && email ? { domain: parseDomain(domain), email, directoryUrl } : undefined,
  };
}

function readTurnOptions(
  config: GatewayConfig,
  values: OptionValues,
  env: NodeJS.ProcessEnv,
): void {
  const text = optionText(values, env);
  const listen = text('turn', 'RTCMESH_TURN');
  if (listen) config.turn.listen = parseListen(listen, '--turn');
  const secret = text('turn-secret', 'RTCMESH_TURN_SECRET');
  if (secret !== undefined) {
    if (!secret.trim()) throw new ConfigError('--turn-secret must not be empty');
    config.turn.secret = secret;
  }
  const url = text('turn-url', 'RTCMESH_TURN_URL');
  if (url) config.turn.url = parseTurnUrl(url);
  const relayIp = text('turn-relay-ip', 'RTCMESH_TURN_RELAY_IP');
  if (relayIp) config.turn.relayIp = parseIpAddress(relayIp, '--turn-relay-ip');
  const allowPrivate = env.RTCMESH_TURN_ALLOW_PRIVATE;
  config.turn.allowPrivatePeers =
    values['turn-allow-private'] === true || allowPrivate === '1' || allowPrivate === 'true';
  const rfc5766 = env.RTCMESH_TURN_RFC5766_CHANNELS;
  config.turn.rfc5766ChannelNumbers =
    values['turn-rfc5766-channels'] === true || rfc5766 === '1' || rfc5766 === 'true';
  const turnHost = config.turn.listen?.host ?? config.udp.host;
  if (!config.turn.url && isWildcard(turnHost) && !config.turn.relayIp && !config.publicIp)
    throw new ConfigError('--turn on all interfaces needs --turn-relay-ip or --public-ip');
}

/** `rtcmesh app`: serves the app on localhost, linked to the LAN's gateways (local-app.ts). */
async function runApp(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      data: { type: 'string' },
      'may-serve': { type: 'boolean' },
      'pwa-dir': { type: 'string' },
      udp: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) fail(`usage: rtcmesh app [--port PORT] [--may-serve] [--data DIR]`);
  const portText = values.port ?? process.env.RTCMESH_APP_PORT ?? String(DEFAULT_APP_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw new ConfigError(`--port must be a port from 1 to 65535, not "${portText}"`);
  const pwaDir = values['pwa-dir'] ?? process.env.RTCMESH_PWA_DIR;
  const udp = values.udp ?? process.env.RTCMESH_APP_UDP;
  const app = await startLocalApp({
    ...(udp ? { udpAddress: parseIpAddress(udp, '--udp') } : {}),
    dataDir: values.data ?? process.env.RTCMESH_NODE_DATA ?? DEFAULT_NODE_DATA,
    port,
    mayServe: values['may-serve'] === true || isSet(process.env.RTCMESH_MAY_SERVE),
    ...(pwaDir ? { pwaDir } : {}),
    logger: stderrLogger,
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    app.close().then(
      () => process.exit(0),
      (err: unknown) => fail(`shutdown failed: ${String(err)}`, 1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  console.log(
    `rtcmesh app: open ${app.url} in a browser on this device (its gateway ${app.gateway.identity.id} links to the gateways on this LAN)`,
  );
}

async function runId(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { data: { type: 'string' } }, strict: true });
  const dataDir = values.data ?? process.env.RTCMESH_DATA ?? DEFAULT_DATA_DIR;
  const { identity, keyFile, created } = await loadOrCreateIdentity(dataDir);
  if (created) console.error(`rtcmesh: made a new node key in ${keyFile}`);
  console.log(`id   ${identity.id}`);
  console.log(`ip6  ${identity.ip6}`);
}

const isSet = (v: string | undefined) => v === '1' || v === 'true';

function nodeOptions(
  args: string[],
  defaultAccept: AcceptPolicy,
  extra: Record<string, { type: 'string' } | { type: 'boolean' }> = {},
) {
  const { values, positionals } = parseArgs({
    args,
    options: {
      gateway: { type: 'string' },
      data: { type: 'string' },
      accept: { type: 'string' },
      known: { type: 'string', multiple: true },
      name: { type: 'string' },
      'may-serve': { type: 'boolean' },
      signaling: { type: 'string' },
      ...extra,
    },
    allowPositionals: true,
    strict: true,
  });
  const accept = (values.accept ?? process.env.RTCMESH_ACCEPT ?? defaultAccept) as string;
  if (accept !== 'everyone' && accept !== 'known' && accept !== 'ask') {
    throw new ConfigError(`--accept must be everyone, known or ask, not "${accept}"`);
  }
  const signaling = (values.signaling ?? process.env.RTCMESH_SIGNALING ?? 'auto') as string;
  if (signaling !== 'auto' && signaling !== 'session' && signaling !== 'http')
    throw new ConfigError(`--signaling must be auto, session or http, not "${signaling}"`);
  const given = values.gateway ?? (process.env.RTCMESH_GATEWAY || undefined);
  const gateway = given === undefined ? undefined : parsePublicUrl(given);
  const mayServe = values['may-serve'] === true || isSet(process.env.RTCMESH_MAY_SERVE);
  if (mayServe && gateway)
    throw new ConfigError(
      '--may-serve is for nodes that find their gateway on the LAN: leave out --gateway',
    );
  const options: CliNodeOptions = {
    gateway,
    mayServe,
    dataDir: values.data ?? process.env.RTCMESH_NODE_DATA ?? DEFAULT_NODE_DATA,
    accept,
    known: values.known ?? [],
    ...(values.name ? { name: values.name } : {}),
    signaling,
  };
  return {
    options,
    positionals,
    values: values as OptionValues,
  };
}

function maxConnections(value: string | boolean | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || !Number.isInteger(n) || n < 1 || n > 65535)
    throw new ConfigError(
      `--max-connections must be a whole number from 1 to 65535, not "${value}"`,
    );
  return n;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const help = command !== undefined ? HELP[command] : undefined;
  if (help && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(help);
    return;
  }
  switch (command) {
    case 'node': {
      const { options, positionals } = nodeOptions(rest, 'known');
      if (positionals.length) fail(`node takes no arguments\n\n${USAGE}`);
      await runNode(options);
      return process.exit(0);
    }
    case 'listen': {
      const { options, positionals, values } = nodeOptions(rest, 'everyone', {
        exec: { type: 'string' },
      });
      const [service, ...more] = positionals;
      if (!service || more.length) fail(`usage: rtcmesh listen SERVICE [--exec CMD]`);
      await runListen(options, service, typeof values.exec === 'string' ? values.exec : undefined);
      return process.exit(0);
    }
    case 'dial': {
      const { options, positionals } = nodeOptions(rest, 'known');
      const [peer, service, ...more] = positionals;
      if (!peer || !service || more.length) fail(`usage: rtcmesh dial PEER SERVICE`);
      checkPeer(peer);
      // Exit at once: the peer connection's native threads need not be waited for.
      return process.exit(await runDial(options, peer, service));
    }
    case 'expose': {
      const { options, positionals, values } = nodeOptions(rest, 'everyone', {
        http: { type: 'boolean' },
        'max-connections': { type: 'string' },
      });
      const [service, target, ...more] = positionals;
      if (!service || !target || more.length)
        fail('usage: rtcmesh expose SERVICE HOST:PORT [--http]');
      const { host, port } = parseListen(target, 'HOST:PORT');
      await runExpose(options, service, {
        host,
        port,
        http: values.http === true,
        maxConnections: maxConnections(values['max-connections']),
      });
      return process.exit(0);
    }
    case 'forward': {
      const { options, positionals, values } = nodeOptions(rest, 'known', {
        'max-connections': { type: 'string' },
      });
      const [local, peer, service, ...more] = positionals;
      if (!local || !peer || !service || more.length)
        fail('usage: rtcmesh forward [BIND:]PORT PEER SERVICE');
      checkPeer(peer);
      // A bare port binds to loopback.
      const { host, port } = parseListen(
        /^\d+$/.test(local) ? `127.0.0.1:${local}` : local,
        '[BIND:]PORT',
      );
      await runForward(options, {
        host,
        port,
        peer,
        service,
        maxConnections: maxConnections(values['max-connections']),
      });
      return process.exit(0);
    }
    case 'peers': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { data: { type: 'string' } },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length) fail('usage: rtcmesh peers [--data DIR]');
      return runPeers(values.data ?? process.env.RTCMESH_NODE_DATA ?? DEFAULT_NODE_DATA);
    }
    case 'gateway':
      return runGateway(rest);
    case 'app':
      return runApp(rest);
    case 'id':
      return runId(rest);
    case '--version':
    case 'version':
      console.log(VERSION);
      return;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    fail((err as Error).message);
  }
  if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
    fail(`address in use: ${(err as Error).message}`, 1);
  // Not a bug: the network said no. The message says why; a stack would not help.
  if (err instanceof GatewayConnectError) fail(err.message, 1);
  fail(err instanceof Error ? (err.stack ?? err.message) : String(err), 1);
});
