#!/usr/bin/env bash
# Measure xmppd against Prosody and ejabberd on this machine with the bundled load generator.
#
#   tuning/compare.sh [--runs N] [--servers "xmppd prosody ejabberd"] [--cases "chat-max ..."]
#                     [--quick] [--interleave] [--out DIR]
#
# Cases: chat-max chat-1000 login-plain login-tls idle-plain idle-tls presence muc muc-20ps
# (the default set), chat-max-block20 (chat-max with a 20-entry XEP-0191 blocklist on every
# account), muc-2shards (xmppd only), pep, and the WebSocket and BOSH cases below.
#
# WebSocket cases (XMPP over WebSocket, RFC 7395: the generator's --transport websocket on the
# server's HTTP port, ws://127.0.0.1:PORT/xmpp-websocket, subprotocol xmpp, one element per
# masked text frame; no TLS, so the servers allow SCRAM over plain ws://):
#   chat-max-ws  chat-max over WebSocket; headline: server CPU per delivered message.
#   chat-1000-ws chat-1000 over WebSocket; headline: p99 (p50 in the raw results).
#   login-ws     login-plain over WebSocket (the HTTP upgrade is part of each login).
#   idle-ws      idle-plain over WebSocket (10,000 sessions); headline: RSS per session.
#
# BOSH cases (XMPP over BOSH, XEP-0124 with XEP-0206: the generator's --transport bosh on the
# server's HTTP port, http://127.0.0.1:PORT/http-bind, plain HTTP/1.1 keep-alive; each session
# is created with hold='1' wait='60' and keeps one request held by the server at all times,
# so the server pushes stanzas in its response; what a session sends goes in the body of a
# new request on its second connection, at most two per session; no TLS, so the servers
# allow SCRAM over plain http://):
#   chat-max-bosh  chat-max over BOSH; headline: server CPU per delivered message (the HTTP
#                requests and responses that carry it included).
#   chat-1000-bosh chat-1000 over BOSH; headline: p99 from the send to the delivery in a held
#                response.
#   login-bosh   login-plain over BOSH (session creation, SASL, restart request, bind; then a
#                terminate request).
#   idle-bosh    idle-plain over BOSH (10,000 sessions, each holding one request on its only
#                connection, renewed every 60 s); headline: RSS per session.
#
# Only for the WebSocket and BOSH cases does a server get an HTTP listener: xmppd
# --http-listen (instead of --no-http; both endpoints on that port), Prosody mod_websocket or
# mod_bosh on its http_ports (consider_websocket_secure, consider_bosh_secure), ejabberd an
# ejabberd_http listener with /xmpp-websocket: ejabberd_http_ws or /http-bind: mod_bosh (and
# mod_bosh in its modules). An xmppd binary without --http-listen (XMPPD_BIN of an older
# commit) shows "not supported", and so does a server whose /http-bind answers 404, 405 or
# 501 (the generator's exit status 3).
#
# MUC cases (the generator's muc scenario, 10 rooms x 50 occupants = 500 sessions; each room
# message is delivered to its 50 occupants, the sender's own reflected copy included):
#   muc          saturation: every occupant keeps one own message in flight (the room's copy
#                back to the sender releases the next), 2 s warm-up, 10 s measured (--rounds 0:
#                the same window for every server, whatever its speed); headline: server CPU
#                per delivered groupchat stanza.
#   muc-20ps     20 room messages/s in total (2 per room, 1,000 deliveries/s) on a fixed
#                timetable, latency from the intended send time; headline: p99.
#   muc-20ps-spin  muc-20ps with the generator spinning (--spin, on its own CPU): over loopback
#                each of the server's sends to a sleeping generator also pays for waking it, a
#                cost a remote client never charges the server (tuning/README.md, "MUC").
#   muc-2shards  muc against xmppd --shards 2, both shards on the server's one CPU (taskset),
#                so occupants and rooms are spread over 2 shards by hash and about half of the
#                deliveries cross shards; muc-2shards minus muc (server CPU per delivery) is
#                the cost of crossing shards (tuning/README.md, "MUC"). Prosody and
#                ejabberd have no shards: the case is recorded as "not supported" for them.
# A server without MUC (the generator's exit status 3) shows "not supported" too.
#
# PEP case (the generator's pep scenario on the presence case's accounts p1..p200 with their
# provisioned 50-contact rosters, all subscriptions both): every session sends presence with
# XEP-0115 caps asking for tune notifications (tune+notify) and answers the server's caps
# queries; after they settle every user publishes XEP-0118 tunes to its own PEP node, each
# publish notifying its 50 contacts (the owner's own copy is not counted):
#   pep          saturation: one publish in flight per user (the IQ result releases the next),
#                2 s warm-up, 10 s measured (--rounds 0); headline: server CPU per delivered
#                PEP notification. A server that answers the publish with an error or sends no
#                notification within the warm-up shows "not supported". Before the load, user 1
#                logs in alone (the server meets the clients' caps ver once), and every user's
#                first item, which creates its node, is published one user at a time (ejabberd
#                23.01 cannot create nodes concurrently). Not in the default set: over a minute
#                per server for 3 runs (tuning/README.md, "PEP").
#
# Federation cases (two instances of the same server software federating with each other
# over server-to-server streams, STARTTLS with self-signed certificates, so each peer is
# authenticated by dialback, XEP-0220; tuning/S2S.md has the method and the figures): server
# A serves a.test on 127.48.0.2 (c2s on the server's usual port, s2s on 5269), server B b.test
# on 127.48.0.3; the chat senders user1..user50@a.test log into A, the receivers
# user51..user100@b.test into B (the generator's --peer-host/--peer-port/--peer-domain), so
# every message is relayed A -> s2s -> B. Both servers run on the server CPU (they share it),
# the generator on its own; the headline is the sum of both servers' CPU per message (each
# side in the raw results: sender_cpu_us_per_op, peer_cpu_us_per_op). How each finds the
# other without touching the machine's DNS or /etc/hosts: xmppd --s2s-route; Prosody's
# libunbound resolver reading a private hosts file (its `unbound.hoststxt`); ejabberd started
# under `unshare -m` with a private /etc/hosts bind-mounted over the machine's (the SRV
# lookups of _xmpp-server._tcp fail for .test, and both fall back to the domain's address on
# port 5269). Configs in tuning/s2s/. Not in the default set. S2S_LOG=LEVEL sets the two
# servers' log level (xmppd and Prosody: debug, info, warn; ejabberd: debug, info, warning).
#   chat-max-s2s   chat-max across federation; headline: both servers' CPU per relayed
#                  message.
#   chat-1000-s2s  chat-1000 across federation (the table's headline is CPU too;
#                  tuning/s2s/summarize_s2s.py prints p50/p99 and each side's CPU).
#
# What it does, end to end on a fresh Debian machine:
#   1. installs Prosody and ejabberd from Debian's packages if missing (apt-get, root or sudo),
#      and builds xmppd-loadtest, and xmppd when it is measured without XMPPD_BIN, in release
#      mode;
#   2. writes the same accounts and rosters for every server (xmppd-loadtest provision):
#      xmppd gets them with `xmppd import`, ejabberd with `ejabberdctl import_piefxis` (the
#      XEP-0227 file), Prosody with tuning/peers/prosody_accounts.py (the list);
#   3. starts one server at a time on loopback with the configs of tuning/peers/ (same module
#      set, warnings-only logging, no shapers, backlog 4096), pinned to CPU 0, and runs every
#      case N times (default 3) with the generator pinned to CPU 1;
#   4. prints one table (medians, min-max, ratios xmppd/peer; tuning/summarize.py) and keeps
#      the raw JSON lines in DIR/results.jsonl. A case a server does not support (the
#      generator's exit status 3) shows as "not supported", not as a failed run. Everything it
#      started is stopped on exit.
#
# --interleave runs the cases in turn (A B A B ... for two cases) instead of all runs of one
# case before the next: for A/B comparisons on a machine whose load drifts. With two cases,
# `tuning/summarize.py --paired RESULTS.jsonl A B` prints every pair and the median difference.
#
# XMPPD_BIN=PATH measures that xmppd binary instead of building this tree (for before/after
# comparisons: keep the release binary of the old commit and point at it). The builds go to
# $CARGO_TARGET_DIR if set (else target/), and the generator is taken from there.
#
# The headline figure of each case is server CPU time per operation, read from /proc of the
# server process: it stays comparable when the machine is noisy. Throughput, latency and the
# generator's own CPU are in the raw results.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=3
servers="xmppd prosody ejabberd"
cases="chat-max chat-1000 login-plain login-tls idle-plain idle-tls presence muc muc-20ps"
out=""
quick=false
interleave=false
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=true; shift ;;
    --interleave) interleave=true; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

known_cases="chat-max chat-max-s2s chat-1000-s2s chat-max-block20 chat-1000 login-plain login-tls idle-plain idle-tls presence muc muc-20ps muc-20ps-spin muc-2shards pep chat-max-ws chat-1000-ws login-ws idle-ws chat-max-bosh chat-1000-bosh login-bosh idle-bosh"
for c in $cases; do
  case " $known_cases " in *" $c "*) ;; *) echo "compare.sh: unknown case $c (known: $known_cases)" >&2; exit 2 ;; esac
done

# Sizes. --quick is for checking the script itself, not for figures.
idle_users=10000 login_users=2000 pres_users=200 contacts=50 duration=10 warmup=2
if $quick; then idle_users=1000 login_users=300 pres_users=60 contacts=10 duration=3 warmup=1; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
case " $servers " in *" prosody "*) command -v prosody >/dev/null || need_pkgs+=(prosody) ;; esac
case " $servers " in *" ejabberd "*) command -v ejabberdctl >/dev/null || [ -x /usr/sbin/ejabberdctl ] || need_pkgs+=(ejabberd) ;; esac
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "== installing ${need_pkgs[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# The packages may start their system-wide instances; those listen on 5222 and eat CPU.
for svc in prosody ejabberd; do
  as_root systemctl stop "$svc" >/dev/null 2>&1 || as_root service "$svc" stop >/dev/null 2>&1 || true
done

# xmppd is built only when it is measured and no XMPPD_BIN is given.
build=(-p xmppd-loadtest)
case " $servers " in *" xmppd "*) [ -n "${XMPPD_BIN:-}" ] || build+=(-p xmppd) ;; esac
echo "== building ${build[*]//-p /} (release)"
cargo build --release --locked "${build[@]}" --bins 2>&1 | grep -v '^\s*\(Compiling\|Finished\)' || true
# Cargo's CARGO_TARGET_DIR is honoured (a build directory of one's own while others build).
target_dir=${CARGO_TARGET_DIR:-$root/target}
xmppd=${XMPPD_BIN:-$target_dir/release/xmppd}
lt=$target_dir/release/xmppd-loadtest
case " $servers " in *" xmppd "*) [ -x "$xmppd" ] || { echo "build failed (xmppd)" >&2; exit 1; } ;; esac
[ -x "$lt" ] || { echo "build failed (xmppd-loadtest)" >&2; exit 1; }

ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then server_cpu=0 gen_cpu=1; else server_cpu=0 gen_cpu=0; fi
# The open-files limit is inherited by the servers and the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== open files limit $(ulimit -n); server on CPU $server_cpu, generator on CPU $gen_cpu"

work=${out:-$(mktemp -d /tmp/xmppd-compare.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
results=$work/results.jsonl
: >"$results"
server_pid=""
stop_server=""
xmppd_shards=1 # set per case by run_one (muc-2shards: 2)
http_transport="" # set per case by run_one: websocket (*-ws) or bosh (*-bosh) gives the server
                  # an HTTP listener with that endpoint; empty for the other cases
http_port=""      # set by start_*: the server's HTTP port when $http_transport is set

cleanup() {
  if [ -n "$stop_server" ]; then $stop_server || true; fi
}
trap cleanup EXIT INT TERM
trap 'echo "compare.sh: a command failed at line $LINENO" >&2' ERR

echo "== provisioning into $work"
"$lt" provision --users "$idle_users" --contacts 0 --user-prefix user --password pass \
  --domain localhost --out-xep0227 "$work/users.xml" --out-list "$work/users.txt" >/dev/null
"$lt" provision --users "$pres_users" --contacts "$contacts" --user-prefix p --password pass \
  --domain localhost --out-xep0227 "$work/pres.xml" --out-list "$work/pres.txt" >/dev/null
# Federation cases: the accounts of each side (senders user1..user50@a.test on server A,
# receivers user51..user100@b.test on B; 100 on each side, the unused half is harmless), one
# self-signed certificate per domain, and the hosts file that maps the two domains.
s2s=false
for c in $cases; do case "$c" in *-s2s) s2s=true ;; esac; done
if $s2s; then
  for side in a b; do
    "$lt" provision --users 100 --contacts 0 --user-prefix user --password pass \
      --domain "$side.test" --out-xep0227 "$work/s2s-$side.xml" --out-list "$work/s2s-$side.txt" >/dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj "/CN=$side.test" -addext "subjectAltName=DNS:$side.test" \
      -keyout "$work/s2s-$side.test.key" -out "$work/s2s-$side.test.crt" 2>/dev/null
  done
  { cat /etc/hosts; printf '127.48.0.2 a.test\n127.48.0.3 b.test\n'; } >"$work/s2s-hosts"
  chmod 644 "$work"/s2s-*
fi
s2s_ip() { case "$1" in a) echo 127.48.0.2 ;; b) echo 127.48.0.3 ;; esac; }
s2s_other() { case "$1" in a) echo b ;; b) echo a ;; esac; }
pair_server="" # federation cases: the server software of the running pair
peer_pid=""    # federation cases: server B's pid (server_pid is A's)

# One ECDSA P-256 certificate for every server (what xmppd generates for itself; an RSA-2048
# signature would cost each TLS login ~0.5 ms more on every server).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1:$2 after $3 s" >&2
  return 1
}

pin_all() { # pid: pin every thread of the process to the server CPU
  taskset -a -cp "$server_cpu" "$1" >/dev/null
}

# ---- xmppd ---------------------------------------------------------------------------------
start_xmppd() {
  port=25222 http_port=25280
  local d=$work/xmppd
  rm -rf "$d" && mkdir -p "$d"
  "$xmppd" import --data-dir "$d/data" --shared-salt "$work/users.txt" >/dev/null
  "$xmppd" import --data-dir "$d/data" --shared-salt "$work/pres.txt" >/dev/null
  # The load generator opens thousands of connections from loopback: exempt it from the
  # per-address limits (a binary from before they existed has no such flag).
  local exempt=""
  "$xmppd" serve --help 2>/dev/null | grep -q -- --exempt-loopback && exempt=--exempt-loopback
  # No HTTP listener except for the WebSocket and BOSH cases: nothing else uses it, and its
  # default port is Prosody's too. HTTPS (which nothing here uses) moves off its default port.
  local http=""
  if [ -n "$http_transport" ]; then
    http="--http-listen 127.0.0.1:$http_port --https-listen 127.0.0.1:25243"
  else
    "$xmppd" serve --help 2>/dev/null | grep -q -- --no-http && http=--no-http
  fi
  # Every shard runs on the server CPU (taskset here and pin_all below; no --pin, which would
  # put shard N on CPU N, the generator's): with --shards 2 the two shards share one core.
  taskset -c "$server_cpu" "$xmppd" --data-dir "$d/data" --log warn --shards "$xmppd_shards" \
    --c2s-listen 127.0.0.1:$port --no-c2s-tls --cert "$work/cert.pem" --key "$work/key.pem" \
    --allow-plain-without-tls --max-connections 30000 $exempt $http >"$d/log" 2>&1 &
  server_pid=$!
  stop_server=stop_xmppd
  wait_port 127.0.0.1 $port 30
  if [ -n "$http_transport" ]; then wait_port 127.0.0.1 $http_port 30; fi
  pin_all "$server_pid"
}
stop_xmppd() {
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  stop_server=""
}

# ---- Prosody -------------------------------------------------------------------------------
start_prosody() {
  port=25322 http_port=25380
  local d=$work/prosody http_modules=""
  rm -rf "$d" && mkdir -p "$d/data" "$d/certs"
  cp "$work/cert.pem" "$d/certs/localhost.crt"
  cp "$work/key.pem" "$d/certs/localhost.key"
  if [ -n "$http_transport" ]; then http_modules="\"$http_transport\";"; fi
  sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@HTTP_PORT@|$http_port|g" \
    -e "s|^    @HTTP_MODULES@\$|    $http_modules|" tuning/peers/prosody.cfg.lua.in >"$d/prosody.cfg.lua"
  python3 tuning/peers/prosody_accounts.py "$d/data" localhost <"$work/users.txt"
  python3 tuning/peers/prosody_accounts.py "$d/data" localhost <"$work/pres.txt"
  taskset -c "$server_cpu" prosody --config "$d/prosody.cfg.lua" -F >"$d/stdout" 2>&1 &
  server_pid=$!
  stop_server=stop_prosody
  wait_port 127.0.0.1 $port 30
  if [ -n "$http_transport" ]; then wait_port 127.0.0.1 $http_port 30; fi
  pin_all "$server_pid"
}
stop_prosody() {
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  stop_server=""
}

# ---- ejabberd ------------------------------------------------------------------------------
ejctl() {
  local d=$work/ejabberd
  # As the ejabberd user directly: ejabberdctl would otherwise switch with su, whose PAM
  # session resets the open-files limit to Debian's 1024.
  as_root setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    env HOME=/var/lib/ejabberd EJABBERDCTL_CONFIG_PATH="$d/ejabberdctl.cfg" ejabberdctl --config "$d/ejabberd.yml" \
    --spool "$d/spool" --logs "$d/logs" --node bench@localhost "$@"
}
start_ejabberd() {
  port=25422 http_port=25480
  local d=$work/ejabberd
  if [ ! -d "$work/ejabberd-spool" ]; then
    # Import once (XEP-0227 through ejabberdctl takes about a minute for 10k users), keep
    # the Mnesia spool as a template, and give every run a fresh copy of it.
    rm -rf "$d" && mkdir -p "$d/spool" "$d/logs"
    ejabberd_files "$d"
    chmod 644 "$work/users.xml" "$work/pres.xml"
    stop_server=stop_ejabberd
    ejctl start
    ejctl started >/dev/null
    ejctl --no-timeout import_piefxis "$work/users.xml" >/dev/null
    ejctl --no-timeout import_piefxis "$work/pres.xml" >/dev/null
    stop_ejabberd
    cp -a "$d/spool" "$work/ejabberd-spool"
  fi
  rm -rf "$d" && mkdir -p "$d/logs"
  cp -a "$work/ejabberd-spool" "$d/spool"
  ejabberd_files "$d"
  stop_server=stop_ejabberd
  taskset -c "$server_cpu" bash -c "$(declare -f ejctl as_root); work=$work; ejctl start"
  ejctl started >/dev/null
  server_pid=$(pgrep -f 'beam.*bench@localhost' | head -1)
  wait_port 127.0.0.1 $port 60
  if [ -n "$http_transport" ]; then wait_port 127.0.0.1 $http_port 60; fi
  pin_all "$server_pid"
}
ejabberd_files() { # dir: config, certificate, ejabberdctl settings, owned by ejabberd
  local d=$1
  cat "$work/cert.pem" "$work/key.pem" >"$d/cert.pem"
  local http_listener="" bosh_module="" handler=""
  case "$http_transport" in
    websocket) handler="/xmpp-websocket: ejabberd_http_ws" ;;
    bosh) handler="/http-bind: mod_bosh" bosh_module="  mod_bosh: {}" ;;
  esac
  if [ -n "$handler" ]; then
    http_listener="  - {port: $http_port, ip: \"127.0.0.1\", module: ejabberd_http, backlog: 4096, request_handlers: {$handler}}"
  fi
  sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@HTTP_PORT@|$http_port|g" \
    -e "s|^@HTTP_LISTENER@\$|$http_listener|" -e "s|^@BOSH_MODULE@\$|$bosh_module|" \
    tuning/peers/ejabberd.yml.in >"$d/ejabberd.yml"
  # One scheduler for one core (the default is one per online CPU, which would thrash).
  cat >"$d/ejabberdctl.cfg" <<'EOF'
ERL_OPTIONS="+S 1:1 -env ERL_CRASH_DUMP_BYTES 0"
ERL_MAX_PORTS=65536
EOF
  chown -R ejabberd:ejabberd "$d" 2>/dev/null || as_root chown -R ejabberd:ejabberd "$d"
}
stop_ejabberd() {
  ejctl stop >/dev/null 2>&1 || true
  ejctl stopped >/dev/null 2>&1 || true
  pkill -f 'beam.*bench@localhost' 2>/dev/null || true
  stop_server=""
}

# ---- federation pairs (the *-s2s cases) -----------------------------------------------------
# start_SERVER_s2s starts server A (a.test on 127.48.0.2) and server B (b.test on 127.48.0.3),
# both pinned to the server CPU, sets server_pid (A), peer_pid (B) and port (the c2s port, the
# same on both addresses), and returns once both listen for c2s and s2s.
start_xmppd_s2s() {
  port=25222
  local side d ip other exempt=""
  "$xmppd" serve --help 2>/dev/null | grep -q -- --exempt-loopback && exempt=--exempt-loopback
  stop_server=stop_pair
  for side in a b; do
    d=$work/xmppd-s2s-$side ip=$(s2s_ip $side) other=$(s2s_other $side)
    rm -rf "$d" && mkdir -p "$d"
    "$xmppd" import --domain "$side.test" --data-dir "$d/data" --shared-salt "$work/s2s-$side.txt" >/dev/null
    taskset -c "$server_cpu" "$xmppd" --data-dir "$d/data" --log "${S2S_LOG:-warn}" --shards 1 \
      --domain "$side.test" --c2s-listen "$ip:$port" --no-c2s-tls \
      --cert "$work/s2s-$side.test.crt" --key "$work/s2s-$side.test.key" \
      --allow-plain-without-tls --max-connections 30000 $exempt --no-http \
      --s2s-listen "$ip:5269" --s2s-route "$other.test=$(s2s_ip "$other"):5269" >"$d/log" 2>&1 &
    if [ $side = a ]; then server_pid=$!; else peer_pid=$!; fi
  done
  for side in a b; do
    wait_port "$(s2s_ip $side)" $port 30
    wait_port "$(s2s_ip $side)" 5269 30
  done
  pin_all "$server_pid"
  pin_all "$peer_pid"
}

start_prosody_s2s() {
  port=25322
  local side d ip
  stop_server=stop_pair
  for side in a b; do
    d=$work/prosody-s2s-$side ip=$(s2s_ip $side)
    rm -rf "$d" && mkdir -p "$d/data" "$d/certs"
    cp "$work/s2s-$side.test.crt" "$d/certs/$side.test.crt"
    cp "$work/s2s-$side.test.key" "$d/certs/$side.test.key"
    cp "$work/s2s-hosts" "$d/hosts"
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@IP@|$ip|g" -e "s|@DOMAIN@|$side.test|g" \
      -e "s|@LOGLEVEL@|${S2S_LOG:-warn}|g" tuning/s2s/prosody.cfg.lua.in >"$d/prosody.cfg.lua"
    python3 tuning/peers/prosody_accounts.py "$d/data" "$side.test" <"$work/s2s-$side.txt"
    taskset -c "$server_cpu" prosody --config "$d/prosody.cfg.lua" -F >"$d/stdout" 2>&1 &
    if [ $side = a ]; then server_pid=$!; else peer_pid=$!; fi
  done
  for side in a b; do
    wait_port "$(s2s_ip $side)" $port 30
    wait_port "$(s2s_ip $side)" 5269 30
  done
  pin_all "$server_pid"
  pin_all "$peer_pid"
}

ejctl_s2s() { # side command...: ejabberdctl of the federation node bench-SIDE
  local side=$1 d=$work/ejabberd-s2s-$1
  shift
  as_root setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    env HOME=/var/lib/ejabberd EJABBERDCTL_CONFIG_PATH="$d/ejabberdctl.cfg" ejabberdctl --config "$d/ejabberd.yml" \
    --spool "$d/spool" --logs "$d/logs" --node "bench-$side@localhost" "$@"
}
start_ejabberd_s2s() {
  port=25422
  local side d ip
  stop_server=stop_pair
  for side in a b; do
    d=$work/ejabberd-s2s-$side ip=$(s2s_ip $side)
    rm -rf "$d" && mkdir -p "$d/spool" "$d/logs"
    cat "$work/s2s-$side.test.crt" "$work/s2s-$side.test.key" >"$d/cert.pem"
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@IP@|$ip|g" -e "s|@DOMAIN@|$side.test|g" \
      -e "s|@LOGLEVEL@|${S2S_LOG:-warning}|g" tuning/s2s/ejabberd.yml.in >"$d/ejabberd.yml"
    # One scheduler for one core, as in ejabberd_files.
    printf '%s\n' 'ERL_OPTIONS="+S 1:1 -env ERL_CRASH_DUMP_BYTES 0"' 'ERL_MAX_PORTS=65536' >"$d/ejabberdctl.cfg"
    chown -R ejabberd:ejabberd "$d" 2>/dev/null || as_root chown -R ejabberd:ejabberd "$d"
    # The private /etc/hosts: a mount namespace of its own (unshare -m: the bind mount is
    # invisible outside it), inherited by the Erlang VM that ejabberdctl starts in it.
    taskset -c "$server_cpu" unshare -m bash -c "mount --bind '$work/s2s-hosts' /etc/hosts && \
      $(declare -f ejctl_s2s as_root); work=$work; ejctl_s2s $side start"
    ejctl_s2s $side started >/dev/null
    ejctl_s2s $side --no-timeout import_piefxis "$work/s2s-$side.xml" >/dev/null
    if [ $side = a ]; then
      server_pid=$(pgrep -f 'beam.*bench-a@localhost' | head -1)
    else
      peer_pid=$(pgrep -f 'beam.*bench-b@localhost' | head -1)
    fi
  done
  for side in a b; do
    wait_port "$(s2s_ip $side)" $port 60
    wait_port "$(s2s_ip $side)" 5269 60
  done
  pin_all "$server_pid"
  pin_all "$peer_pid"
}

s2s_log() { # server side: where that server writes its log
  case "$1" in
    xmppd) echo "$work/xmppd-s2s-$2/log" ;;
    prosody) echo "$work/prosody-s2s-$2/prosody.log" ;;
    ejabberd) echo "$work/ejabberd-s2s-$2/logs/ejabberd.log" ;;
  esac
}
s2s_check_free() { # nothing else may listen on the pair's addresses: xmppd binds with
  # SO_REUSEPORT, so a second listener on the same address would share its connections
  if ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE '^127\.48\.0\.[23]:'; then
    echo "compare.sh: something already listens on 127.48.0.2 or 127.48.0.3:" >&2
    ss -ltnp | grep -E '127\.48\.0\.[23]:' >&2
    return 1
  fi
}

stop_pair() { # stops both servers of a federation pair
  local side p
  case "$pair_server" in
    ejabberd)
      for side in a b; do
        ejctl_s2s $side stop >/dev/null 2>&1 || true
        ejctl_s2s $side stopped >/dev/null 2>&1 || true
      done
      for p in $server_pid $peer_pid; do kill "$p" 2>/dev/null || true; done ;;
    *)
      for p in $server_pid $peer_pid; do kill "$p" 2>/dev/null || true; done
      for p in $server_pid $peer_pid; do wait "$p" 2>/dev/null || true; done ;;
  esac
  peer_pid=""
  stop_server=""
}

# ---- cases ---------------------------------------------------------------------------------
case_args() { # case -> generator arguments
  case "$1" in
    chat-max) echo "chat --pairs 50 --window 16 --warmup $warmup --duration $duration" ;;
    # chat-max with a 20-entry XEP-0191 blocklist on every account (JIDs outside the test):
    # what the privacy filter costs a message when every account has one.
    chat-max-block20) echo "chat --pairs 50 --window 16 --warmup $warmup --duration $duration --blocklist 20" ;;
    chat-1000) echo "chat --pairs 50 --rate 1000 --warmup $warmup --duration $duration" ;;
    # The same loads across federation (run_one adds the second server's address and pid).
    chat-max-s2s) case_args chat-max ;;
    chat-1000-s2s) case_args chat-1000 ;;
    login-plain) echo "login --users $login_users --concurrency 50" ;;
    login-tls) echo "login --users $login_users --concurrency 50 --starttls" ;;
    idle-plain) echo "idle --users $idle_users --settle 5" ;;
    idle-tls) echo "idle --users $idle_users --settle 5 --starttls" ;;
    presence) echo "presence --users $pres_users --contacts $contacts --rounds 5 --user-prefix p" ;;
    # 10 rooms x 50 occupants (accounts user1..user500), at saturation with one own message in
    # flight per occupant, measured over a fixed window; muc-2shards is the same load against
    # xmppd --shards 2 (xmppd_only, shards_of).
    muc | muc-2shards) echo "muc --rooms 10 --occupants 50 --rounds 0 --window 1 --warmup $warmup --duration $duration" ;;
    # 20 room messages/s in all (1,000 deliveries/s), open loop.
    muc-20ps) echo "muc --rooms 10 --occupants 50 --rate 20 --warmup $warmup --duration $duration" ;;
    # The same with the generator polling without sleep (--spin): the server's loopback sends
    # no longer wake a sleeping receiver.
    muc-20ps-spin) echo "muc --rooms 10 --occupants 50 --rate 20 --warmup $warmup --duration $duration --spin" ;;
    # PEP tunes to the presence case's rosters (p1..p200, 50 contacts each, caps with
    # tune+notify), one publish in flight per user, over a fixed window.
    pep) echo "pep --users $pres_users --contacts $contacts --rounds 0 --window 1 --warmup $warmup --duration $duration --user-prefix p" ;;
    # The same loads over XMPP over WebSocket (RFC 7395), to the server's HTTP port (run_one).
    chat-max-ws) echo "$(case_args chat-max) --transport websocket" ;;
    chat-1000-ws) echo "$(case_args chat-1000) --transport websocket" ;;
    login-ws) echo "$(case_args login-plain) --transport websocket" ;;
    idle-ws) echo "$(case_args idle-plain) --transport websocket" ;;
    # The same loads over XMPP over BOSH (XEP-0124/XEP-0206), to the server's HTTP port.
    chat-max-bosh) echo "$(case_args chat-max) --transport bosh" ;;
    chat-1000-bosh) echo "$(case_args chat-1000) --transport bosh" ;;
    login-bosh) echo "$(case_args login-plain) --transport bosh" ;;
    idle-bosh) echo "$(case_args idle-plain) --transport bosh" ;;
    *) echo "unknown case $1" >&2; return 1 ;;
  esac
}

xmppd_only() { # case -> whether only xmppd can run it (its shards)
  case "$1" in muc-2shards) return 0 ;; *) return 1 ;; esac
}
shards_of() { # case -> xmppd --shards
  case "$1" in muc-2shards) echo 2 ;; *) echo 1 ;; esac
}
http_transport_of() { # case -> websocket or bosh when it runs over HTTP (the server's HTTP port)
  case "$1" in *-ws) echo websocket ;; *-bosh) echo bosh ;; *) echo "" ;; esac
}

run_one() { # server case run: one run on a fresh server, its result appended to $results
  local server=$1 c=$2 r=$3 rc=0 line why
  if [ "$server" != xmppd ] && xmppd_only "$c"; then
    why="xmppd-only case: $server has no shards"
    printf '{"case":"%s","server":"%s","run":%d,"unsupported":"%s"}\n' "$c" "$server" "$r" "$why" >>"$results"
    echo "   $c run $r: not supported by $server ($why)"
    return 0
  fi
  xmppd_shards=$(shards_of "$c")
  http_transport=$(http_transport_of "$c")
  if [ -n "$http_transport" ]; then
    if [ "$server" = xmppd ] && ! "$xmppd" serve --help 2>/dev/null | grep -q -- --http-listen; then
      why="this xmppd binary has no HTTP listener (--http-listen): no XMPP over $http_transport"
      printf '{"case":"%s","server":"%s","run":%d,"unsupported":"%s"}\n' "$c" "$server" "$r" "$why" >>"$results"
      echo "   $c run $r: not supported by $server ($why)"
      return 0
    fi
  fi
  # A fresh server for every run: no state (caches, heap growth) carried between runs.
  local target=(--domain localhost)
  case "$c" in
    *-s2s)
      # A federation pair: senders on A (a.test), receivers on B (b.test).
      pair_server=$server
      s2s_check_free
      "start_${server}_s2s"
      target=(--host 127.48.0.2 --domain a.test --peer-host 127.48.0.3 --peer-port "$port"
        --peer-domain b.test --peer-pid "$peer_pid") ;;
    *) "start_$server" ;;
  esac
  local gen_port=$port
  if [ -n "$http_transport" ]; then gen_port=$http_port; fi
  # shellcheck disable=SC2046
  taskset -c "$gen_cpu" "$lt" $(case_args "$c") --port "$gen_port" "${target[@]}" \
    --server-pid "$server_pid" --label "$server" --json --timeout 300 \
    >"$work/$server-$c-$r.out" 2>"$work/$server-$c-$r.err" || rc=$?
  line=$(grep '^{' "$work/$server-$c-$r.out" | tail -1) || true
  "$stop_server"
  case "$c" in
    *-s2s) # keep both servers' logs of every federation run
      local side
      for side in a b; do
        cp "$(s2s_log "$server" "$side")" "$work/$server-$c-$r.$side.log" 2>/dev/null || true
      done ;;
  esac
  if [ "$rc" = 3 ]; then
    # The generator's "feature not supported by the server" (muc without MUC, a blocklist
    # without XEP-0191, no BOSH endpoint): recorded as such, not as a failed run.
    why=$(grep -m1 'not supported' "$work/$server-$c-$r.out" | sed 's/["\\]/\x27/g') || true
    printf '{"case":"%s","server":"%s","run":%d,"unsupported":"%s"}\n' "$c" "$server" "$r" "$why" >>"$results"
    echo "   $c run $r: not supported by $server ($why)"
    return 0
  fi
  if [ -z "$line" ]; then
    echo "   $c run $r: no result, exit status $rc (see $work/$server-$c-$r.err)"
    return 0
  fi
  printf '{"case":"%s","server":"%s","run":%d,"load":"%s","result":%s}\n' "$c" "$server" "$r" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$line" >>"$results"
  echo "   $c run $r: $(python3 tuning/summarize.py --one "$c" <<<"$line")"
}

for server in $servers; do
  echo "== $server"
  if $interleave; then
    for ((r = 1; r <= runs; r++)); do
      for c in $cases; do run_one "$server" "$c" "$r"; done
    done
  else
    for c in $cases; do
      for ((r = 1; r <= runs; r++)); do run_one "$server" "$c" "$r"; done
    done
  fi
done

echo
echo "== $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
python3 tuning/summarize.py "$results"
echo
echo "raw results: $results"
