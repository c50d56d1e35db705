#!/usr/bin/env bash
# What opening a server-to-server stream costs (tuning/S2S.md, "Stream open"):
#
#   tuning/s2s/stream_open.sh [--servers "xmppd prosody ejabberd"] [--domains N]
#                             [--delay-ms D] [--out DIR]
#
# Server A serves a.test (127.48.0.2), server B serves N domains d1.test..dN.test (127.48.0.3),
# both of the same software, both pinned to CPU 0, STARTTLS with self-signed certificates and
# dialback (the configs of tuning/s2s/, the hosts of B's VirtualHosts / hosts list filled in).
# A client on A pings each dK.test twice (tuning/s2s/stream_open.py): the first ping opens
# A's stream to dK.test and dK.test's stream back to a.test (B needs it to answer, and
# dialback has B verify A's key and A verify B's), the second crosses the open streams; CPU of
# both servers is read around each. Every s2s connection goes through tuning/s2s/relay.py
# (127.48.0.4:5269 -> B, 127.48.0.5:5269 -> A), which logs every chunk. Two passes: the relay
# adding no delay (CPU and time figures), then adding D ms (default 25) in each direction:
# (first − second ping, delayed) − (the same, undelayed), divided by 2·D, is the number of
# round trips that opening the streams puts on the first stanza's path (the TCP handshakes
# are not delayed by the relay: add one per connection on that path).
#
# How each server finds the relays: xmppd --s2s-route; Prosody libunbound's hoststxt (a
# private hosts file); ejabberd under `unshare -m` with a private /etc/hosts bind-mounted.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
servers="xmppd prosody ejabberd"
ndom=10
delay=25
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift 2 ;;
    --domains) ndom=$2; shift 2 ;;
    --delay-ms) delay=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stream_open.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
target_dir=${CARGO_TARGET_DIR:-$root/target}
xmppd=${XMPPD_BIN:-$target_dir/release/xmppd}
work=${out:-$(mktemp -d /tmp/xmppd-s2sopen.XXXXXX)}
mkdir -p "$work" && chmod 755 "$work"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

doms=()
for ((k = 1; k <= ndom; k++)); do doms+=("d$k.test"); done
targets=$(IFS=,; echo "${doms[*]}")
san=$(printf 'DNS:%s,' "${doms[@]}"); san=${san%,}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=a.test -addext "subjectAltName=DNS:a.test" -keyout "$work/a.key" -out "$work/a.crt" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=d1.test -addext "subjectAltName=$san" -keyout "$work/b.key" -out "$work/b.crt" 2>/dev/null
{
  cat /etc/hosts
  echo "127.48.0.5 a.test"
  for d in "${doms[@]}"; do echo "127.48.0.4 $d"; done
} >"$work/hosts"
printf 'user1@a.test pass\n' >"$work/a.txt"
chmod 644 "$work"/*

pids=() relay_pid=""
cleanup() {
  for p in "${pids[@]}" $relay_pid; do kill "$p" 2>/dev/null || true; done
  if [ -n "${ej_stop:-}" ]; then $ej_stop || true; fi
}
trap cleanup EXIT INT TERM

wait_port() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1:$2 after $3 s" >&2
  return 1
}

start_relay() { # delay_ms log
  python3 tuning/s2s/relay.py --delay-ms "$1" --log "$2" \
    127.48.0.4:5269=127.48.0.3:5269 127.48.0.5:5269=127.48.0.2:5269 >"$2.stdout" 2>&1 &
  relay_pid=$!
  wait_port 127.48.0.4 5269 10
}

start_xmppd() { # -> pid_a pid_b port
  port=25222
  local d=$work/xmppd routes=() bdoms=()
  rm -rf "$d" && mkdir -p "$d"
  for dd in "${doms[@]}"; do routes+=(--s2s-route "$dd=127.48.0.4:5269"); bdoms+=(--domain "$dd"); done
  "$xmppd" import --domain a.test --data-dir "$d/a" --shared-salt "$work/a.txt" >/dev/null
  taskset -c 0 "$xmppd" --data-dir "$d/a" --log "${S2S_LOG:-warn}" --shards 1 --domain a.test \
    --c2s-listen 127.48.0.2:$port --no-c2s-tls --cert "$work/a.crt" --key "$work/a.key" \
    --allow-plain-without-tls --no-http --s2s-listen 127.48.0.2:5269 "${routes[@]}" >"$d/a.log" 2>&1 &
  pid_a=$!
  taskset -c 0 "$xmppd" --data-dir "$d/b" --log "${S2S_LOG:-warn}" --shards 1 "${bdoms[@]}" \
    --c2s-listen 127.48.0.3:$port --no-c2s-tls --cert "$work/b.crt" --key "$work/b.key" \
    --allow-plain-without-tls --no-http --s2s-listen 127.48.0.3:5269 \
    --s2s-route a.test=127.48.0.5:5269 >"$d/b.log" 2>&1 &
  pid_b=$!
  pids=($pid_a $pid_b)
  wait_port 127.48.0.2 5269 30; wait_port 127.48.0.3 5269 30; wait_port 127.48.0.2 $port 30
}
stop_xmppd() { kill $pid_a $pid_b 2>/dev/null || true; wait $pid_a $pid_b 2>/dev/null || true; pids=(); }

start_prosody() {
  port=25322
  local d
  for side in a b; do
    d=$work/prosody-$side
    rm -rf "$d" && mkdir -p "$d/data" "$d/certs"
    cp "$work/hosts" "$d/hosts"
    local ip=127.48.0.2 dom=a.test
    [ $side = b ] && ip=127.48.0.3 dom=d1.test
    cp "$work/$side.crt" "$d/certs/$dom.crt"; cp "$work/$side.key" "$d/certs/$dom.key"
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@IP@|$ip|g" -e "s|@DOMAIN@|$dom|g" \
      -e "s|@LOGLEVEL@|${S2S_LOG:-warn}|g" tuning/s2s/prosody.cfg.lua.in >"$d/prosody.cfg.lua"
    if [ $side = b ]; then
      for dd in "${doms[@]:1}"; do
        printf 'VirtualHost "%s"\n    ssl = { certificate = "%s/certs/d1.test.crt"; key = "%s/certs/d1.test.key" }\n' \
          "$dd" "$d" "$d" >>"$d/prosody.cfg.lua"
      done
    else
      python3 tuning/peers/prosody_accounts.py "$d/data" a.test <"$work/a.txt" >/dev/null
    fi
    taskset -c 0 prosody --config "$d/prosody.cfg.lua" -F >"$d/stdout" 2>&1 &
    if [ $side = a ]; then pid_a=$!; else pid_b=$!; fi
  done
  pids=($pid_a $pid_b)
  wait_port 127.48.0.2 5269 30; wait_port 127.48.0.3 5269 30; wait_port 127.48.0.2 $port 30
}
stop_prosody() { stop_xmppd; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
ejctl_so() {
  local side=$1 d=$work/ejabberd-$1
  shift
  as_root setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    env HOME=/var/lib/ejabberd EJABBERDCTL_CONFIG_PATH="$d/ejabberdctl.cfg" ejabberdctl --config "$d/ejabberd.yml" \
    --spool "$d/spool" --logs "$d/logs" --node "sopen-$side@localhost" "$@"
}
start_ejabberd() {
  port=25422
  local d
  for side in a b; do
    d=$work/ejabberd-$side
    rm -rf "$d" && mkdir -p "$d/spool" "$d/logs"
    local ip=127.48.0.2 dom=a.test
    [ $side = b ] && ip=127.48.0.3 dom=d1.test
    cat "$work/$side.crt" "$work/$side.key" >"$d/cert.pem"
    sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$port|g" -e "s|@IP@|$ip|g" -e "s|@DOMAIN@|$dom|g" \
      -e "s|@LOGLEVEL@|${S2S_LOG:-warning}|g" tuning/s2s/ejabberd.yml.in >"$d/ejabberd.yml"
    if [ $side = b ]; then
      sed -i "s|^hosts: .*|hosts: [$(printf '"%s",' "${doms[@]}" | sed 's/,$//')]|" "$d/ejabberd.yml"
    fi
    printf '%s\n' 'ERL_OPTIONS="+S 1:1 -env ERL_CRASH_DUMP_BYTES 0"' 'ERL_MAX_PORTS=65536' >"$d/ejabberdctl.cfg"
    chown -R ejabberd:ejabberd "$d"
    taskset -c 0 unshare -m bash -c "mount --bind '$work/hosts' /etc/hosts && \
      $(declare -f ejctl_so as_root); work=$work; ejctl_so $side start"
    ejctl_so $side started >/dev/null
    if [ $side = a ]; then
      ejctl_so a register user1 a.test pass >/dev/null
      pid_a=$(pgrep -f 'beam.*sopen-a@localhost' | head -1)
    else
      pid_b=$(pgrep -f 'beam.*sopen-b@localhost' | head -1)
    fi
  done
  ej_stop=stop_ejabberd
  wait_port 127.48.0.2 5269 60; wait_port 127.48.0.3 5269 60; wait_port 127.48.0.2 $port 60
}
stop_ejabberd() {
  for side in a b; do ejctl_so $side stop >/dev/null 2>&1 || true; ejctl_so $side stopped >/dev/null 2>&1 || true; done
  kill $pid_a $pid_b 2>/dev/null || true
  ej_stop=""
}

for server in $servers; do
  for dl in 0 "$delay"; do
    echo "== $server, relay delay $dl ms"
    start_relay "$dl" "$work/$server-relay-$dl.log"
    "start_$server"
    python3 tuning/s2s/stream_open.py --host 127.48.0.2 --port $port --domain a.test \
      --pids "$pid_a,$pid_b" --targets "$targets" --label "$server" --json \
      >"$work/$server-$dl.out" 2>&1 || echo "   stream_open.py failed: see $work/$server-$dl.out"
    grep -v '^{' "$work/$server-$dl.out" | tail -1
    "stop_$server"
    kill $relay_pid 2>/dev/null || true; wait $relay_pid 2>/dev/null || true; relay_pid=""
  done
done
python3 tuning/s2s/open_report.py "$work" "$delay" $servers
echo "raw: $work"
