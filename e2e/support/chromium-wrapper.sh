#!/usr/bin/env bash
# Starts the Chromium the harness chose (RTCMESH_CHROMIUM), adding the features WebRTC on
# loopback needs to Playwright's own --disable-features list: Chromium honours only the last
# such switch, so passing a second one would silently drop Playwright's (DESIGN §7).
set -euo pipefail
exe="${RTCMESH_CHROMIUM:?RTCMESH_CHROMIUM must name the Chromium executable}"
extra="WebRtcHideLocalIpsWithMdns"
args=()
seen=0
for a in "$@"; do
  case "$a" in
    --disable-features=*) a="$a,$extra"; seen=1 ;;
  esac
  args+=("$a")
done
[ "$seen" = 1 ] || args+=("--disable-features=$extra")
# A test host in a network namespace of the test's own (TESTING.md: NAT tests).
if [ -n "${RTCMESH_NETNS:-}" ]; then
  exec ip netns exec "$RTCMESH_NETNS" "$exe" "${args[@]}"
fi
exec "$exe" "${args[@]}"
