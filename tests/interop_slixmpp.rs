//! Interop with a real client library nobody here wrote: slixmpp, in two versions, set up by
//! `tests/interop/setup.sh`: the pinned PyPI release in a virtualenv, and Debian 12's
//! python3-slixmpp (1.8.3) for the system Python. Two clients homed on different shards log in
//! over STARTTLS; `chat.py` chats both ways and pings the server, `im.py` adds a roster item,
//! completes a subscription handshake, sees presence, round-trips a vCard and receives an
//! offline message after reconnecting.
//!
//! The PyPI client is told to use SCRAM-SHA-256. Debian's runs with its defaults: it knows
//! only the `tls-unique` channel binding, so it tries SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS
//! first, gets `e=unsupported-channel-binding-type`, and logs in with SCRAM-SHA-256 and the
//! GS2 flag `y` (issue 8).

mod common;

use common::*;
use std::process::Command;

/// Which slixmpp a test runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slixmpp {
    /// The pinned release from PyPI (tests/interop/requirements.txt) in a virtualenv.
    Pypi,
    /// Debian's python3-slixmpp with /usr/bin/python3 (installed by setup.sh when missing).
    Debian,
}

impl Slixmpp {
    fn name(self) -> &'static str {
        match self {
            Slixmpp::Pypi => "pypi",
            Slixmpp::Debian => "debian",
        }
    }

    /// The interpreter that has this slixmpp, set up once per test binary.
    fn python(self) -> String {
        static PYTHON: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        PYTHON[self as usize]
            .get_or_init(|| {
                let setup = Command::new(interop_dir().join("setup.sh"))
                    .arg(self.name())
                    .output()
                    .expect("run tests/interop/setup.sh");
                assert!(
                    setup.status.success(),
                    "setting up slixmpp ({}) failed: {}",
                    self.name(),
                    String::from_utf8_lossy(&setup.stderr)
                );
                String::from_utf8(setup.stdout).unwrap().trim().to_string()
            })
            .clone()
    }

    /// The library's version, for failure messages.
    fn version(self) -> String {
        let out = Command::new(self.python())
            .args(["-c", "import slixmpp; print(slixmpp.__version__)"])
            .output()
            .expect("ask slixmpp for its version");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn interop_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Run one interop script with `slixmpp` against a fresh two-shard server with two accounts on
/// different shards, forcing SASL mechanism `mech` (or `default`); it must print
/// `interop ok`. Returns its standard output.
fn run(slixmpp: Slixmpp, script: &str, mech: &str) -> String {
    run_with_accounts(slixmpp, script, mech, 0)
}

/// [`run`] with `extra` more accounts, all on shard 1 (the second account's), passed after
/// `mech` as `JID PASSWORD` pairs.
fn run_with_accounts(slixmpp: Slixmpp, script: &str, mech: &str, extra: usize) -> String {
    let python = slixmpp.python();
    let s = Server::start(&["--shards", "2"]);
    let (a, pa) = s.new_user_on_shard("ia", 0, 2);
    let (b, pb) = s.new_user_on_shard("ib", 1, 2);
    let mut more = Vec::new();
    for _ in 0..extra {
        let (c, pc) = s.new_user_on_shard("ic", 1, 2);
        more.extend([format!("{c}@localhost"), pc]);
    }
    let out = Command::new(&python)
        .arg(interop_dir().join(script))
        .args([
            "127.0.0.1",
            &s.c2s.port().to_string(),
            s.cert_path().to_str().unwrap(),
            &format!("{a}@localhost"),
            &format!("{b}@localhost"),
            &pa,
            &pb,
            mech,
        ])
        .args(&more)
        .output()
        .expect("run the interop script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "slixmpp {} ({}) interop ({script}, {mech}) failed\nstdout: {stdout}\nstderr: {}\n\
         server log:\n{}",
        slixmpp.version(),
        slixmpp.name(),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    stdout
}

/// Debian's slixmpp with its defaults logs in only through the `tls-unique` fallback; make
/// sure that is the path the test took, so it keeps testing issue 8.
fn assert_tls_unique_fallback(stdout: &str) {
    let logins: Vec<&str> = stdout.lines().filter(|l| l.starts_with("login ")).collect();
    assert!(logins.len() >= 2, "no login reports in {stdout:?}");
    for line in logins {
        assert!(
            line.contains(
                "with SCRAM-SHA-256 after [SCRAM-SHA-256-PLUS: not-authorized \
                 (e=unsupported-channel-binding-type), SCRAM-SHA-1-PLUS: not-authorized \
                 (e=unsupported-channel-binding-type)]"
            ),
            "not the tls-unique fallback: {line}"
        );
    }
}

#[test]
fn interop_slixmpp_scram_sha256_starttls_two_shards() {
    run(Slixmpp::Pypi, "chat.py", "SCRAM-SHA-256");
}

#[test]
fn interop_slixmpp_roster_subscription_presence_vcard_offline() {
    run(Slixmpp::Pypi, "im.py", "SCRAM-SHA-256");
}

#[test]
fn interop_debian_slixmpp_defaults_tls_unique_fallback_chat() {
    let stdout = run(Slixmpp::Debian, "chat.py", "default");
    assert_tls_unique_fallback(&stdout);
}

#[test]
fn interop_debian_slixmpp_defaults_tls_unique_fallback_im() {
    let stdout = run(Slixmpp::Debian, "im.py", "default");
    assert_tls_unique_fallback(&stdout);
}

/// XEP-0191 with slixmpp's xep_0191 plugin: block (with its push), a blocked contact's
/// message refused with `service-unavailable`, the blocklist, unblock, delivery again.
#[test]
fn interop_slixmpp_xep0191_block_refuse_unblock() {
    run(Slixmpp::Pypi, "blocking.py", "SCRAM-SHA-256");
}

#[test]
fn interop_debian_slixmpp_xep0191_block_refuse_unblock() {
    let stdout = run(Slixmpp::Debian, "blocking.py", "default");
    assert_tls_unique_fallback(&stdout);
}

/// XEP-0016 with slixmpp's xep_0016 stanzas: a list created and read back, activated (a
/// blocked message refused, what the list does not cover delivered), made default, both
/// declined, an unknown list's `item-not-found`, and removal.
#[test]
fn interop_slixmpp_xep0016_lists_active_default_remove() {
    run(Slixmpp::Pypi, "privacy.py", "SCRAM-SHA-256");
}

#[test]
fn interop_debian_slixmpp_xep0016_lists_active_default_remove() {
    let stdout = run(Slixmpp::Debian, "privacy.py", "default");
    assert_tls_unique_fallback(&stdout);
}

/// XEP-0045 with slixmpp's xep_0045 plugin: a room created by joining (201), configured
/// through the plugin's get/set of the owner form (name, persistence; read back, in
/// disco#info and the service's items), a second occupant, groupchat both ways, a private
/// message through the occupant JID, a kick with set_role (307), and leaving.
#[test]
fn interop_slixmpp_xep0045_muc_create_configure_groupchat_pm_kick() {
    run(Slixmpp::Pypi, "muc.py", "SCRAM-SHA-256");
}

#[test]
fn interop_debian_slixmpp_xep0045_muc_create_configure_groupchat_pm_kick() {
    let stdout = run(Slixmpp::Debian, "muc.py", "default");
    assert_tls_unique_fallback(&stdout);
}

/// XEP-0163 with XEP-0115 through slixmpp's xep_0163, xep_0084 and xep_0107 plugins: three
/// accounts (owner, fan, deaf), mutual subscriptions, the owner's service querying the caps it
/// has not seen; the owner's mood and avatar metadata notified to the fan (and the owner's own
/// client), whose caps carry `NODE+notify`, and not to the deaf client, whose caps do not;
/// the avatar data and the mood read back with items requests; then the deaf client
/// subscribes explicitly through xep_0060 (XEP-0060 §6.1, PEP-06), is notified once, and
/// nothing more after it unsubscribes.
#[test]
fn interop_slixmpp_xep0163_xep0084_pep_notifications() {
    let stdout = run_with_accounts(Slixmpp::Pypi, "pep.py", "SCRAM-SHA-256", 1);
    assert!(
        stdout.contains("explicit subscription: one notification"),
        "{stdout}"
    );
}

#[test]
fn interop_debian_slixmpp_xep0163_xep0084_pep_notifications() {
    let stdout = run_with_accounts(Slixmpp::Debian, "pep.py", "default", 1);
    assert_tls_unique_fallback(&stdout);
    assert!(
        stdout.contains("explicit subscription: one notification"),
        "{stdout}"
    );
}
