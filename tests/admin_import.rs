//! `xmppd import`: accounts, rosters and vCards from XEP-0227 and list files, checked by
//! logging in with the imported passwords (SCRAM) and reading the roster back on the wire.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use xmppd::xml::Element;

const VCARD: &str = "vcard-temp";

/// Three users with rosters; alice also has a vCard, an offline message and a private-XML
/// element (both skipped with a warning).
const PIE: &str = "<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='alice' password='alice-pw'>
      <query xmlns='jabber:iq:roster'>
        <item jid='bob@localhost' name='Bob' subscription='both'>
          <group>Friends</group>
          <group>Work</group>
        </item>
        <item jid='carol@localhost' subscription='both'/>
      </query>
      <vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>
      <offline-messages>
        <message xmlns='jabber:client' from='bob@localhost' to='alice@localhost'><body>hi</body></message>
      </offline-messages>
      <query xmlns='jabber:iq:private'><prefs xmlns='urn:example'/></query>
    </user>
    <user name='bob' password='bob-pw'>
      <query xmlns='jabber:iq:roster'>
        <item jid='alice@localhost' name='Alice' subscription='both'><group>Friends</group></item>
      </query>
    </user>
    <user name='carol' password='carol-pw'>
      <query xmlns='jabber:iq:roster'>
        <item jid='alice@localhost' subscription='both'/>
      </query>
    </user>
  </host>
</server-data>
";

/// Runs `xmppd import` (with `args` after the file) on a data directory.
fn import(data: &Path, file: &Path, args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .arg("import")
        .arg(file)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run xmppd import")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "import failed: {}{}",
        stdout(out),
        stderr(out)
    );
}

/// The accounts of the data directory behind `s`.
fn users(s: &Server) -> Vec<String> {
    let out = s.admin(&["users"], "");
    assert_ok(&out);
    stdout(&out).lines().map(str::to_string).collect()
}

fn item<'a>(items: &'a [Element], jid: &str) -> &'a Element {
    items
        .iter()
        .find(|i| i.attr("jid") == Some(jid))
        .unwrap_or_else(|| panic!("no item {jid} in {items:?}"))
}

fn groups(item: &Element) -> Vec<String> {
    let mut g: Vec<String> = item
        .elements()
        .filter(|e| e.is("group", NS_ROSTER))
        .map(|e| e.text())
        .collect();
    g.sort();
    g
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn xep0227_import_roster_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(dir.path(), "users.xml", PIE);
    let out = import(&data, &file, &[]);
    assert_ok(&out);
    let summary = stdout(&out);
    assert!(
        summary
            .starts_with("imported 3 accounts (4 roster items, 1 vCards), skipped 0 existing, in "),
        "{summary}"
    );
    let warning = stderr(&out);
    assert!(
        warning.contains("1 offline messages") && warning.contains("jabber:iq:private"),
        "{warning}"
    );

    let s = Server::start_on(&data, &[]);
    let mut alice = Client::login(&s, "alice", "alice-pw", Some("r"));
    let (items, _) = alice.roster_items();
    assert_eq!(items.len(), 2, "{items:?}");
    let bob = item(&items, "bob@localhost");
    assert_eq!(bob.attr("subscription"), Some("both"));
    assert_eq!(bob.attr("name"), Some("Bob"));
    assert_eq!(groups(bob), ["Friends", "Work"]);
    assert_eq!(
        item(&items, "carol@localhost").attr("subscription"),
        Some("both")
    );
    alice.send(&format!(
        "<iq type='get' id='v1'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = alice.recv_el();
    let card = r.child("vCard", VCARD).expect("vCard");
    assert_eq!(
        card.child("FN", VCARD).map(|f| f.text()).as_deref(),
        Some("Alice Liddell")
    );

    // Both stored credential sets work.
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_scram("SCRAM-SHA-1", "bob", "bob-pw").name, "success");
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_scram("SCRAM-SHA-256", "carol", "x").name, "failure");
    let mut carol = Client::login(&s, "carol", "carol-pw", None);
    let (items, _) = carol.roster_items();
    assert_eq!(items.len(), 1);
    assert_eq!(
        item(&items, "alice@localhost").attr("subscription"),
        Some("both")
    );
}

#[test]
fn list_import_while_running_roster_and_login() {
    let s = Server::start(&[]);
    let file = write(
        &s.data,
        "users.txt",
        "# user password contacts\n\
         \n\
         dora@localhost dora-pw eve@localhost,fay@localhost\n\
         Eve@LocalHost eve-pw dora@localhost\n\
         fay@localhost fay-pw\n",
    );
    let out = import(&s.data, &file, &[]);
    assert_ok(&out);
    assert!(
        stdout(&out)
            .starts_with("imported 3 accounts (3 roster items, 0 vCards), skipped 0 existing"),
        "{}",
        stdout(&out)
    );
    let mut dora = Client::login(&s, "dora", "dora-pw", None);
    let (items, _) = dora.roster_items();
    assert_eq!(items.len(), 2, "{items:?}");
    for jid in ["eve@localhost", "fay@localhost"] {
        let i = item(&items, jid);
        assert_eq!(i.attr("subscription"), Some("both"));
        assert!(groups(i).is_empty());
    }
    let mut eve = Client::login(&s, "eve", "eve-pw", None);
    let (items, _) = eve.roster_items();
    assert_eq!(
        item(&items, "dora@localhost").attr("subscription"),
        Some("both")
    );
    let mut fay = Client::login(&s, "fay", "fay-pw", None);
    assert!(fay.roster_items().0.is_empty());
}

#[test]
fn existing_account_refuses_import_unless_skip_or_replace() {
    let s = Server::start(&[]);
    s.adduser("hal", "hal-old-pw");
    let file = write(
        &s.data,
        "users.txt",
        "gil@localhost gil-pw hal@localhost\n\
         hal@localhost hal-new-pw gil@localhost\n\
         ida@localhost ida-pw\n",
    );

    let out = import(&s.data, &file, &[]);
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(
        msg.contains("users.txt:2: hal@localhost already exists")
            && msg.contains("--skip-existing")
            && msg.contains("--replace"),
        "{msg}"
    );
    assert_eq!(users(&s), ["hal@localhost"], "nothing else was created");

    let out = import(&s.data, &file, &["--skip-existing"]);
    assert_ok(&out);
    assert!(
        stdout(&out)
            .starts_with("imported 2 accounts (1 roster items, 0 vCards), skipped 1 existing"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        users(&s),
        ["gil@localhost", "hal@localhost", "ida@localhost"]
    );
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("hal", "hal-old-pw").name, "success");
    let mut hal = Client::login(&s, "hal", "hal-old-pw", None);
    assert!(
        hal.roster_items().0.is_empty(),
        "a skipped roster is untouched"
    );
    hal.close();

    let out = import(&s.data, &file, &["--replace"]);
    assert_ok(&out);
    assert!(
        stdout(&out)
            .starts_with("imported 3 accounts (2 roster items, 0 vCards), skipped 0 existing"),
        "{}",
        stdout(&out)
    );
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("hal", "hal-old-pw").name, "failure");
    let mut hal = Client::login(&s, "hal", "hal-new-pw", None);
    let (items, _) = hal.roster_items();
    assert_eq!(
        item(&items, "gil@localhost").attr("subscription"),
        Some("both")
    );
}

#[test]
fn malformed_file_bad_jid_unserved_host_name_the_line_and_write_nothing() {
    let s = Server::start(&[]);
    let cases = [
        (
            "mismatched.xml",
            PIE.replace(
                "</user>\n    <user name='carol'",
                "</usr>\n    <user name='carol'",
            ),
            "mismatched.xml:22: </usr> does not close <user>",
        ),
        (
            "truncated.xml",
            PIE[..PIE.find("<user name='carol'").unwrap()].to_string(),
            "truncated.xml:23: the file ends inside <host>",
        ),
        (
            "badjid.xml",
            PIE.replace(
                "carol@localhost' subscription",
                "carol@@localhost' subscription",
            ),
            "badjid.xml:10: contact \"carol@@localhost\" is not a valid JID",
        ),
        (
            "foreign.xml",
            PIE.replace("<host jid='localhost'>", "<host jid='example.org'>"),
            "foreign.xml:3: host example.org is not served here",
        ),
        (
            "badjid.txt",
            "a@localhost pw\nb@localhost pw c@localhost/res\n".to_string(),
            "badjid.txt:2: contact \"c@localhost/res\" must be a bare JID",
        ),
        (
            "foreign.txt",
            "a@localhost pw\n\nb@example.org pw\n".to_string(),
            "foreign.txt:3: host example.org is not served here",
        ),
    ];
    for (name, text, expected) in cases {
        let file = write(&s.data, name, &text);
        let out = import(&s.data, &file, &[]);
        assert!(!out.status.success(), "{name} was accepted");
        let msg = stderr(&out);
        assert!(msg.contains(expected), "{name}: {msg}");
        assert!(users(&s).is_empty(), "{name} wrote accounts");
    }
}

#[test]
fn shared_salt_import_users_with_one_password_log_in() {
    let s = Server::start(&[]);
    let file = write(
        &s.data,
        "load.txt",
        "load0@localhost same-pw load1@localhost\n\
         load1@localhost same-pw load0@localhost\n\
         load2@localhost other-pw\n",
    );
    let out = import(&s.data, &file, &["--shared-salt", "--threads", "3"]);
    assert_ok(&out);
    for (user, pw) in [
        ("load0", "same-pw"),
        ("load1", "same-pw"),
        ("load2", "other-pw"),
    ] {
        let mut c = Client::login(&s, user, pw, None);
        assert_eq!(c.roster_items().0.len(), usize::from(user != "load2"));
    }
}
