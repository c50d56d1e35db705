#!/usr/bin/env bash
# Kernel and process limits for many XMPP connections on one host.
#   tuning/kernel.sh          print the current values next to the recommended ones
#   tuning/kernel.sh --apply  apply them (root; sysctl values last until reboot)
# See tuning/README.md for why each matters and the runs that back the numbers.
set -euo pipefail
apply=false
[ "${1:-}" = "--apply" ] && apply=true

# name recommended why
settings=(
  "fs.file-max 2097152 every connection is a file descriptor"
  "fs.nr_open 2097152 the ceiling for a process's open-files hard limit"
  "net.core.somaxconn 4096 accept backlog (xmppd listens with 4096)"
  "net.ipv4.tcp_max_syn_backlog 8192 bursts of logins"
  "net.ipv4.ip_local_port_range 1024_65000 outgoing ports for load generators on the same host"
  "net.ipv4.tcp_tw_reuse 1 reconnect storms from a load generator"
  "net.core.netdev_max_backlog 16384 loopback bursts"
)

for s in "${settings[@]}"; do
  read -r name want why <<<"$s"
  want=${want//_/ }
  have=$(sysctl -n "$name" 2>/dev/null | tr '\t' ' ' || echo "?")
  printf '%-32s now: %-14s recommended: %-14s (%s)\n' "$name" "$have" "$want (at least)" "$why"
  if $apply; then
    # Only raise single numeric limits; never lower what an operator already raised.
    if [[ "$want" =~ ^[0-9]+$ && "$have" =~ ^[0-9]+$ && "$have" -ge "$want" && "$name" != net.ipv4.tcp_tw_reuse ]]; then
      continue
    fi
    sysctl -q -w "$name=$want" || echo "  could not set $name" >&2
  fi
done

printf '%-32s now: %-14s recommended: %-14s (%s)\n' "ulimit -n (soft/hard)" \
  "$(ulimit -Sn)/$(ulimit -Hn)" "1048576" "xmppd raises its soft limit to the hard limit itself"
printf '%-32s now: %-14s recommended: %-14s (%s)\n' "ulimit -l (KiB)" \
  "$(ulimit -l)" "65536+" "io_uring buffer registration; glommio falls back if lower"
if $apply; then
  echo "process limits are per service: set LimitNOFILE=1048576 (and LimitMEMLOCK=64M) in the systemd unit"
fi
