"""What the interop scripts share: a slixmpp client that logs in over STARTTLS and works with
both slixmpps the tests run, PyPI's (requirements.txt) and Debian 12's python3-slixmpp 1.8.3.

Command line of every script: HOST PORT CERT ALICE BOB PASSWORD_A PASSWORD_B [MECH], where
MECH is a SASL mechanism to force, or `default` (the library's own choice and fallback order:
slixmpp 1.8 tries SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS with `tls-unique` first).
"""

import asyncio
import inspect
import logging
import sys

import slixmpp


def parse_args():
    """(host, port, cert, alice, bob, password_a, password_b, mech) from the command line."""
    host, port, cert, alice, bob, pa, pb = sys.argv[1:8]
    mech = sys.argv[8] if len(sys.argv) > 8 else "SCRAM-SHA-256"
    return host, int(port), cert, alice, bob, pa, pb, mech


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, host, port, cert, mech, plugins=()):
        super().__init__(jid, password)
        self.target = (host, port)
        self.ca_certs = cert
        for p in plugins:
            self.register_plugin(p)
        if mech != "default":
            self.plugin["feature_mechanisms"].use_mech = mech
        self.online = asyncio.get_event_loop().create_future()
        # (mechanism, condition, text) of every SASL failure before the login.
        self.sasl_failures = []
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)

    async def on_online(self):
        """Runs at session start, before `online` is set."""

    async def _on_start(self, _event):
        await self.on_online()
        if not self.online.done():
            self.online.set_result(True)

    def _on_failed_auth(self, failure):
        # slixmpp goes on with its next mechanism; only running out of them is fatal.
        mech = self.plugin["feature_mechanisms"].mech
        self.sasl_failures.append(
            (mech.name if mech else None, failure["condition"], failure["text"])
        )

    def _on_failed_all_auth(self, _event):
        if not self.online.done():
            self.online.set_exception(
                RuntimeError(f"{self.boundjid}: authentication failed: {self.sasl_failures}")
            )

    def mechanism(self):
        """The SASL mechanism of the login."""
        mech = self.plugin["feature_mechanisms"].mech
        return mech.name if mech else None

    def login_report(self):
        """One line: the mechanism that logged in and the failed attempts before it."""
        failures = ", ".join(
            f"{mech}: {cond}" + (f" ({text})" if text else "")
            for mech, cond, text in self.sasl_failures
        )
        return f"login {self.boundjid.bare} with {self.mechanism()} after [{failures}]"

    def start(self):
        # STARTTLS is mandatory on our plain port; slixmpp negotiates it when offered.
        # slixmpp >= 1.9 takes connect(host, port); 1.8 (Debian 12) takes connect((host, port)).
        if "address" in inspect.signature(self.connect).parameters:
            self.connect(self.target)
        else:
            self.connect(*self.target)


def check_mechanism(client, mech):
    """A forced mechanism must be the one used; with `default`, any SCRAM will do."""
    used = client.mechanism()
    if mech == "default":
        assert used and used.startswith("SCRAM-"), f"mechanism used: {used}"
    else:
        assert used == mech, f"mechanism used: {used}"


async def wait_online(*clients, timeout=20):
    """Waits for every client's session to start; on timeout, says what SASL answered."""
    try:
        await asyncio.wait_for(asyncio.gather(*(c.online for c in clients)), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            "not logged in after %ss; SASL failures: %s"
            % (timeout, {str(c.requested_jid): c.sasl_failures for c in clients})
        ) from None


async def wait_for(queue, pred, what, timeout=15):
    """The first item of `queue` for which `pred` holds (others are dropped)."""

    async def loop():
        while True:
            item = await queue.get()
            if pred(item):
                return item

    try:
        return await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def settle(result):
    """A plugin command's result: a future (or, in some slixmpp versions, a coroutine)."""
    if inspect.isawaitable(result):
        return await result
    return result


def send(client, to, body):
    """Send a chat message; returns its id."""
    msg = client.make_message(mto=to, mbody=body, mtype="chat")
    msg["id"] = client.new_id()
    msg.send()
    return msg["id"]


async def log_in(cls, host, port, cert, mech, *accounts):
    """Start a `cls` client for each (jid, password), wait until all are online, check the
    SASL mechanism each used and print its login report; the clients, in order."""
    clients = [cls(jid, password, host, port, cert, mech) for jid, password in accounts]
    for c in clients:
        c.start()
    await wait_online(*clients)
    for c in clients:
        check_mechanism(c, mech)
        print(c.login_report())
    return clients


async def finish(what, *clients):
    """Disconnect the clients and print the success line the Rust side looks for."""
    for c in clients:
        c.disconnect()
    await asyncio.sleep(0.2)
    print(f"interop ok: {what}")


def script(main, timeout=90):
    """Run `main(*command line)` as a script: exit status 0 when it returns, 1 (with the
    reason on stderr) when it raises or takes longer than `timeout` seconds."""
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(asyncio.wait_for(main(*parse_args()), timeout))
    except Exception as e:  # report and fail
        print(f"interop FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
