#!/usr/bin/env python3
"""Write Prosody 0.12 `internal_hashed` account files for a list of users.

usage: prosody_accounts.py DATA_PATH HOST < list
       (lines: `user@host password [contact@host,contact@host...]`, as xmppd-loadtest provision
       writes them; contacts become roster items with subscription both, group "bench")

SCRAM-SHA-1 keys with 4096 iterations, as `prosodyctl register` would store them, but with one
salt for all users so that 100k accounts take seconds: a load-test shortcut, not for real
accounts. Prosody's datamanager encodes every non-alphanumeric byte as %xx in file names.
"""
import hashlib, hmac, os, sys


def encode(s):
    return "".join(c if c.isalnum() else "%%%02x" % ord(c) for c in s)


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_roster(path, contacts):
    """Prosody 0.12's roster store: item per contact JID, metadata under [false]."""
    out = ["return {", "\t[false] = {", "\t\t[\"version\"] = 1;", "\t\t[\"pending\"] = {};", "\t};"]
    for jid in contacts:
        name = jid.split("@", 1)[0]
        out.append("\t[%s] = {" % lua_str(jid))
        out.append('\t\t["subscription"] = "both";')
        out.append("\t\t[\"name\"] = %s;" % lua_str(name))
        out.append('\t\t["groups"] = { ["bench"] = true; };')
        out.append("\t};")
    out.append("};")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    data_path, host = sys.argv[1:3]
    accounts = os.path.join(data_path, encode(host), "accounts")
    rosters = os.path.join(data_path, encode(host), "roster")
    os.makedirs(accounts, exist_ok=True)
    os.makedirs(rosters, exist_ok=True)
    salt, iterations = "00000000-0000-4000-8000-xmppdbench00", 4096
    cache = {}
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        user, password = fields[0], fields[1]
        contacts = fields[2].split(",") if len(fields) > 2 else []
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
        if contacts:
            write_roster(os.path.join(rosters, encode(user) + ".dat"), contacts)
        n += 1
    print(f"wrote {n} Prosody accounts for {host}", file=sys.stderr)


main()
