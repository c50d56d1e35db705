#!/usr/bin/env python3
"""Write Prosody 0.12 `internal_hashed` account files for a list of users.

usage: prosody_accounts.py DATA_PATH HOST < list      (lines: `user password`)

SCRAM-SHA-1 keys with 4096 iterations, as `prosodyctl register` would store them, but with one
salt for all users so that 100k accounts take seconds: a load-test shortcut, not for real
accounts. Prosody's datamanager encodes every non-alphanumeric byte as %xx in file names.
"""
import hashlib, hmac, os, sys


def encode(s):
    return "".join(c if c.isalnum() else "%%%02x" % ord(c) for c in s)


def main():
    data_path, host = sys.argv[1:3]
    accounts = os.path.join(data_path, encode(host), "accounts")
    os.makedirs(accounts, exist_ok=True)
    salt, iterations = "00000000-0000-4000-8000-xmppdbench00", 4096
    cache = {}
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, password = line.split(None, 1)
        user = user.split("@", 1)[0]
        if password not in cache:
            salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
            client_key = hmac.new(salted, b"Client Key", "sha1").digest()
            stored = hashlib.sha1(client_key).hexdigest()
            server = hmac.new(salted, b"Server Key", "sha1").hexdigest()
            cache[password] = (stored, server)
        stored, server = cache[password]
        with open(os.path.join(accounts, encode(user) + ".dat"), "w") as f:
            f.write('return {\n\t["salt"] = "%s";\n\t["server_key"] = "%s";\n'
                    '\t["iteration_count"] = %d;\n\t["stored_key"] = "%s";\n};\n'
                    % (salt, server, iterations, stored))
        n += 1
    print(f"wrote {n} Prosody accounts for {host}", file=sys.stderr)


main()
