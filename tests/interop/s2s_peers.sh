#!/usr/bin/env bash
# Federation peers for tests/interop_s2s.rs: Prosody 0.12 and ejabberd 23.01 from Debian's
# packages, each run as a private child process (own config, data, logs, certificate,
# loopback address), never as the system service and without touching /etc.
#
#   s2s_peers.sh install
#       Installs prosody, ejabberd, openssl and util-linux (unshare, setpriv) with apt-get when
#       missing (as root, or with sudo -n; one install at a time: flock), and prints the
#       versions. Exits non-zero when a peer cannot be installed.
#   s2s_peers.sh setup [--modules M1,M2] [--trust FILE] prosody|ejabberd DIR DOMAIN IP
#                      RESOLVER_IP NAME=IP...
#       Writes the peer's private state into DIR: config (from tests/interop/s2s/*.in), a
#       self-signed certificate for DOMAIN, and the private name-resolution files (below).
#       The peer listens on IP (c2s 5222, s2s 5269). Prosody only, for variants of the
#       default config:
#         --modules  more modules_enabled (e.g. s2s_bidi: XEP-0288, off by default);
#         --trust    the peer trusts the certificates in FILE (PEM) on s2s, so that a peer
#                    presenting one of them authenticates by certificate (SASL EXTERNAL,
#                    XEP-0178) instead of dialback. FILE is read when the peer starts: it
#                    may be written between setup and run. The peer's own certificate then
#                    carries CA:FALSE, so that xmppd can trust it in turn (--s2s-ca
#                    DIR/cert.pem; webpki refuses a CA certificate as an end entity).
#   s2s_peers.sh register prosody|ejabberd DIR DOMAIN USER PASSWORD
#       Creates an account (Prosody: prosodyctl, before or after the start; ejabberd:
#       ejabberdctl against the running node).
#   s2s_peers.sh run prosody|ejabberd DIR
#       Runs the peer in the foreground (exec; the caller kills its process group), inside a
#       private mount namespace (unshare -m) where /etc/hosts and /etc/resolv.conf are
#       bind-mounted from DIR.
#   s2s_peers.sh stop DIR
#       Kills what `run` left (the process group recorded in DIR/run.pgid), if anything.
#
# Name resolution. xmppd finds the peer by a static route (--s2s-route DOMAIN=IP:5269). The
# peer finds xmppd's domain through the system resolver of its mount namespace:
#   - DIR/resolv.conf names RESOLVER_IP (port 53), where the test runs a small DNS responder
#     that answers SRV _xmpp-server._tcp.<xmppd domain> (target <xmppd domain>, port 5269),
#     A <xmppd domain> (xmppd's address), NXDOMAIN for _xmpps-server and anything else;
#   - DIR/hosts is the machine's /etc/hosts plus the NAME=IP pairs (xmppd's domain), for the
#     lookups that go through NSS "files" first.
# Prosody 0.12 resolves with libunbound (lua-unbound) with hoststxt = true: libunbound never
# queries a nameserver on 127.0.0.0/8 (do-not-query-localhost, which lua-unbound cannot
# change), so Prosody does not use the responder; for names under xmppd.test the hosts file
# answers (SRV: NXDOMAIN, then A on the default port 5269). ejabberd 23.01 asks SRV with
# Erlang's inet_res (nameservers from /etc/resolv.conf, read at VM start: the responder) and
# the address of the SRV target with getaddrinfo (NSS: /etc/hosts first). Both namespaces
# share the real network, so the responder on 127.x.y.z:53 is reachable; only the two files
# differ.
#
# Must run as root (unshare -m, bind mounts, port 53 for the test's responder); when not
# root, every subcommand re-executes itself with sudo -n.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then
  exec sudo -n -E "$0" "$@"
fi

die() { echo "s2s_peers.sh: $*" >&2; exit 1; }

cmd="${1:-}"
shift || true

case "$cmd" in
  install)
    lock="${XMPPD_INTEROP_LOCK:-/tmp/xmppd-s2s-peers-install.lock}"
    exec 9>"$lock"
    flock 9
    need=()
    command -v prosody >/dev/null || need+=(prosody)
    [ -x /usr/sbin/ejabberdctl ] || need+=(ejabberd)
    command -v openssl >/dev/null || need+=(openssl)
    command -v unshare >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
    # Prosody's resolver: without lua-unbound it falls back to its own net.dns.
    lua5.4 -e 'require "lunbound"' 2>/dev/null || need+=(lua-unbound)
    if [ ${#need[@]} -gt 0 ]; then
      echo "installing ${need[*]} (Debian packages) for the s2s interop tests" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
      # The packages start their system-wide instances; those are not used here (and would
      # hold 5222/5269 on all addresses).
      for svc in prosody ejabberd; do
        systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
      done
    fi
    command -v prosody >/dev/null || die "prosody is not installed"
    [ -x /usr/sbin/ejabberdctl ] || die "ejabberd is not installed"
    echo "prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null || echo '?')"
    echo "ejabberd $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null || echo '?')"
    ;;

  setup)
    modules="" trust=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --modules) [ $# -ge 2 ] || die "--modules needs a value"; modules=$2; shift 2 ;;
        --trust) [ $# -ge 2 ] || die "--trust needs a value"; trust=$2; shift 2 ;;
        --*) die "unknown option $1" ;;
        *) break ;;
      esac
    done
    [ $# -ge 5 ] || die "usage: setup [--modules M1,M2] [--trust FILE] prosody|ejabberd DIR DOMAIN IP RESOLVER_IP NAME=IP..."
    peer=$1 dir=$2 domain=$3 ip=$4 resolver=$5
    shift 5
    if [ "$peer" != prosody ] && { [ -n "$modules" ] || [ -n "$trust" ]; }; then
      die "--modules and --trust are for prosody only"
    fi
    # Both end up in sed replacements and Lua strings.
    case "$modules$trust" in
      *[\"\\\|\&]*) die "no quotes, backslashes, | or & in --modules or --trust" ;;
    esac
    mkdir -p "$dir"
    chmod 755 "$dir"
    # Private resolution files (bind-mounted by `run`).
    cp /etc/hosts "$dir/hosts"
    for pair in "$@"; do
      printf '%s %s\n' "${pair#*=}" "${pair%%=*}" >>"$dir/hosts"
    done
    printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$resolver" >"$dir/resolv.conf"
    chmod 644 "$dir/hosts" "$dir/resolv.conf"
    # A self-signed certificate for the peer's domain (it will not validate at xmppd:
    # dialback authenticates; unless xmppd is told to trust it, with --trust here).
    ext=()
    [ -z "$trust" ] || ext=(-addext "basicConstraints=critical,CA:FALSE")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" "${ext[@]}" \
      -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    # Prosody variants: more modules (a Lua list), trusted s2s certificates (a Lua line).
    extra_modules="-- (no more modules)"
    if [ -n "$modules" ]; then
      IFS=, read -ra mods <<<"$modules"
      extra_modules=$(printf '"%s"; ' "${mods[@]}")
    fi
    s2s_trust="-- (no trusted s2s certificates: dialback authenticates)"
    [ -z "$trust" ] || s2s_trust="s2s_ssl = { cafile = \"$trust\" }"
    fill() {
      sed -e "s|@DIR@|$dir|g" -e "s|@IP@|$ip|g" -e "s|@DOMAIN@|$domain|g" \
        -e "s|@EXTRA_MODULES@|$extra_modules|g" -e "s|@S2S_TRUST@|$s2s_trust|g" "$1"
    }
    case "$peer" in
      prosody)
        mkdir -p "$dir/data" "$dir/certs"
        cp "$dir/cert.pem" "$dir/certs/$domain.crt"
        cp "$dir/key.pem" "$dir/certs/$domain.key"
        fill "$here/s2s/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
        ;;
      ejabberd)
        mkdir -p "$dir/spool" "$dir/logs"
        cat "$dir/cert.pem" "$dir/key.pem" >"$dir/$domain.pem"
        fill "$here/s2s/ejabberd.yml.in" >"$dir/ejabberd.yml"
        # A node of its own (name, distribution port without epmd, cookie in HOME=DIR).
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        node="s2stest$$x$RANDOM@localhost"
        cat >"$dir/ejabberdctl.cfg" <<EOF
ERLANG_NODE=$node
ERL_DIST_PORT=$port
ERL_OPTIONS="+S 2:2"
EOF
        echo "$node" >"$dir/node"
        # ejabberdctl points ERL_INETRC here: nothing to add to what resolv.conf says.
        echo '%% private: name resolution comes from /etc/resolv.conf and /etc/hosts' >"$dir/inetrc"
        chown -R ejabberd:ejabberd "$dir"
        ;;
      *) die "unknown peer $peer" ;;
    esac
    ;;

  register)
    [ $# -eq 5 ] || die "usage: register prosody|ejabberd DIR DOMAIN USER PASSWORD"
    peer=$1 dir=$2 domain=$3 user=$4 pass=$5
    case "$peer" in
      prosody)
        timeout 30 prosodyctl --config "$dir/prosody.cfg.lua" register "$user" "$domain" "$pass"
        ;;
      ejabberd)
        timeout 60 setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
          env HOME="$dir" ejabberdctl --config-dir "$dir" --spool "$dir/spool" --logs "$dir/logs" \
          register "$user" "$domain" "$pass"
        ;;
      *) die "unknown peer $peer" ;;
    esac
    ;;

  run)
    [ $# -eq 2 ] || die "usage: run prosody|ejabberd DIR"
    peer=$1 dir=$2
    # The caller starts this in a process group of its own; `stop` kills that group.
    ps -o pgid= $$ | tr -d ' ' >"$dir/run.pgid"
    case "$peer" in
      prosody)
        set -- prosody --config "$dir/prosody.cfg.lua" -F
        ;;
      ejabberd)
        set -- setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
          env HOME="$dir" ejabberdctl --config-dir "$dir" --spool "$dir/spool" --logs "$dir/logs" \
          foreground
        ;;
      *) die "unknown peer $peer" ;;
    esac
    cd "$dir"
    # shellcheck disable=SC2016
    exec unshare --mount --propagation private sh -c '
      set -e
      mount --bind "$0/hosts" /etc/hosts
      mount --bind "$0/resolv.conf" /etc/resolv.conf
      exec "$@"' "$dir" "$@"
    ;;

  stop)
    [ $# -eq 1 ] || die "usage: stop DIR"
    dir=$1
    if [ -s "$dir/run.pgid" ]; then
      pgid=$(cat "$dir/run.pgid")
      # Only a group that still runs something from DIR (the pid may have been reused).
      if [ "$pgid" -gt 1 ] && kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pgid" 2>/dev/null || true
      fi
    fi
    ;;

  *)
    sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
