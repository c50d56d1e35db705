#!/usr/bin/env python3
"""Writes an `xmppd import` list file of N users with ring rosters: user i has the K/2 users
before and the K/2 after it as contacts (subscription both, so every pair is listed from both
sides). Used to time bulk imports:

    scripts/gen_import_list.py 100000 50 > /tmp/users.txt
    time target/release/xmppd import /tmp/users.txt --data-dir /tmp/d --lmdb-map-size-mib 8192
"""
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    domain = sys.argv[3] if len(sys.argv) > 3 else "localhost"
    half = k // 2
    out = sys.stdout
    out.write(f"# {n} users, ring rosters of {2 * half} contacts\n")
    for i in range(n):
        contacts = ",".join(
            f"user{(i + d) % n}@{domain}" for d in range(-half, half + 1) if d != 0
        )
        out.write(f"user{i}@{domain} pw-{i}-secret {contacts}\n")


if __name__ == "__main__":
    main()
