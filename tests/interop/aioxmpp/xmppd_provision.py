"""aioxmpp's StaticPasswordProvisioner, with fresh accounts for every test.

Upstream's end-to-end tests assume each test starts from clean accounts (its CI used
provisioners that create them: SASL ANONYMOUS or in-band registration, neither of which xmppd
offers). The stock StaticPasswordProvisioner hands the same accounts to every test, so what one
test stored (a PEP node's configuration, private XML) is still there in the next, and the
XEP-0060 publish-options tests then meet a node another test created (`conflict`, correctly).
This subclass never reuses an account: tests/interop_aioxmpp.rs makes enough of them.
"""

from aioxmpp.e2etest.provision import Provisioner, StaticPasswordProvisioner


class FreshAccountsProvisioner(StaticPasswordProvisioner):
    async def teardown(self):
        # The base class's teardown resets its account counter; skip only that reset.
        await Provisioner.teardown(self)
