//! `xmppd import`: accounts, rosters, vCards and privacy lists from XEP-0227 and list files,
//! checked by logging in with the imported passwords (SCRAM) and reading the roster, the
//! privacy lists and the blocklist back on the wire.

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
            .starts_with("imported 3 accounts (4 roster items, 1 vCards, 0 privacy lists), skipped 0 existing, in "),
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
        stdout(&out).starts_with(
            "imported 3 accounts (3 roster items, 0 vCards, 0 privacy lists), skipped 0 existing"
        ),
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
        stdout(&out).starts_with(
            "imported 2 accounts (1 roster items, 0 vCards, 0 privacy lists), skipped 1 existing"
        ),
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
        stdout(&out).starts_with(
            "imported 3 accounts (2 roster items, 0 vCards, 0 privacy lists), skipped 0 existing"
        ),
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

// ---------------------------------------------------------------------------------------------
// Privacy lists (XEP-0016 data in XEP-0227) and the blocklist they hold (XEP-0191 §5).

const NS_PRIVACY: &str = "jabber:iq:privacy";
const NS_BLOCKING: &str = "urn:xmpp:blocking";

/// An IQ round trip that must succeed: the result.
fn iq_ok(c: &mut Client, ty: &str, payload: &str) -> Element {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("p{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    c.send(&format!("<iq type='{ty}' id='{id}'>{payload}</iq>"));
    let (r, _) = c.recv_until("iq answer", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{payload}: {r:?}");
    r
}

/// The default list's name and the names of the lists (sorted), by a privacy get.
fn privacy_names(c: &mut Client) -> (Option<String>, Vec<String>) {
    let r = iq_ok(c, "get", &format!("<query xmlns='{NS_PRIVACY}'/>"));
    let q = r.child("query", NS_PRIVACY).expect("query");
    let default = q
        .child("default", NS_PRIVACY)
        .and_then(|d| d.attr("name"))
        .map(str::to_string);
    let mut names: Vec<String> = q
        .elements()
        .filter(|e| e.is("list", NS_PRIVACY))
        .filter_map(|e| e.attr("name").map(str::to_string))
        .collect();
    names.sort();
    (default, names)
}

/// The items of one list, by a privacy get.
fn privacy_items(c: &mut Client, name: &str) -> Vec<Element> {
    let r = iq_ok(
        c,
        "get",
        &format!("<query xmlns='{NS_PRIVACY}'><list name='{name}'/></query>"),
    );
    let list = r
        .child("query", NS_PRIVACY)
        .and_then(|q| q.child("list", NS_PRIVACY))
        .expect("list");
    list.elements().cloned().collect()
}

/// The blocked JIDs (sorted), by a XEP-0191 blocklist get.
fn blocklist(c: &mut Client) -> Vec<String> {
    let r = iq_ok(c, "get", &format!("<blocklist xmlns='{NS_BLOCKING}'/>"));
    let mut jids: Vec<String> = r
        .child("blocklist", NS_BLOCKING)
        .expect("blocklist")
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    jids.sort();
    jids
}

/// `from` sends `to` a chat message with this id; returns the error condition it gets back,
/// if any (a ping round trip later: none).
fn message_error(from: &mut Client, to: &str, id: &str) -> Option<String> {
    from.send(&format!(
        "<message to='{to}' id='{id}' type='chat'><body>{id}</body></message>"
    ));
    let before = from.sync();
    before
        .iter()
        .find(|e| e.name == "message" && e.attr("id") == Some(id))
        .map(|e| {
            assert_eq!(e.attr("type"), Some("error"), "{e:?}");
            stanza_error(e).expect("condition").0
        })
}

/// Juliet's lists come before her roster (the group check waits for the whole user); the
/// `<active/>` (session state) is ignored and the empty list skipped with a warning.
const PRIVACY_PIE: &str = "<?xml version='1.0'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='juliet' password='juliet-pw'>
      <query xmlns='jabber:iq:privacy'>
        <active name='public'/>
        <default name='public'/>
        <list name='public'>
          <item type='jid' value='Tybalt@LocalHost' action='deny' order='1'/>
          <item type='group' value='Family' action='allow' order='2'><message/></item>
          <item type='subscription' value='none' action='deny' order='3'><message/></item>
        </list>
        <list name='quiet'/>
        <list name='private'>
          <item action='deny' order='7'><presence-out/></item>
        </list>
      </query>
      <query xmlns='jabber:iq:roster'>
        <item jid='nurse@localhost' subscription='both'><group>Family</group></item>
      </query>
    </user>
    <user name='tybalt' password='tybalt-pw'/>
    <user name='nurse' password='nurse-pw'/>
    <user name='romeo' password='romeo-pw'/>
  </host>
</server-data>
";

#[test]
fn xep0227_privacy_lists_and_default_are_imported_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(dir.path(), "privacy.xml", PRIVACY_PIE);
    let out = import(&data, &file, &[]);
    assert_ok(&out);
    let summary = stdout(&out);
    assert!(
        summary.starts_with(
            "imported 4 accounts (1 roster items, 0 vCards, 2 privacy lists), skipped 0 existing"
        ),
        "{summary}"
    );
    let warning = stderr(&out);
    assert!(
        warning.contains("skipped 1 empty privacy lists")
            && warning.contains("juliet@localhost's \"quiet\" at line 13"),
        "{warning}"
    );

    let s = Server::start_on(&data, &[]);
    let mut juliet = Client::online(&s, "juliet", "juliet-pw", Some("balcony"));
    assert_eq!(
        privacy_names(&mut juliet),
        (
            Some("public".to_string()),
            vec!["private".to_string(), "public".to_string()]
        )
    );
    let items = privacy_items(&mut juliet, "public");
    let attrs = |i: &Element| -> Vec<String> {
        ["order", "type", "value", "action"]
            .iter()
            .map(|a| i.attr(a).unwrap_or("-").to_string())
            .collect()
    };
    let summary: Vec<Vec<String>> = items.iter().map(attrs).collect();
    assert_eq!(
        summary,
        [
            ["1", "jid", "tybalt@localhost", "deny"],
            ["2", "group", "Family", "allow"],
            ["3", "subscription", "none", "deny"],
        ]
    );
    assert!(items[1].child("message", NS_PRIVACY).is_some(), "{items:?}");
    let private = privacy_items(&mut juliet, "private");
    assert_eq!(private.len(), 1);
    assert!(private[0].child("presence-out", NS_PRIVACY).is_some());
    // The list named in the file as default is the blocklist too (XEP-0191 §5).
    assert_eq!(blocklist(&mut juliet), ["tybalt@localhost"]);

    // The default list decides: tybalt is blocked, romeo (not in the roster) denied
    // messages, the nurse (Family) allowed.
    let mut tybalt = Client::login(&s, "tybalt", "tybalt-pw", None);
    assert_eq!(
        message_error(&mut tybalt, "juliet@localhost", "t1").as_deref(),
        Some("service-unavailable")
    );
    let mut romeo = Client::login(&s, "romeo", "romeo-pw", None);
    assert_eq!(
        message_error(&mut romeo, "juliet@localhost", "r1").as_deref(),
        Some("service-unavailable")
    );
    let mut nurse = Client::login(&s, "nurse", "nurse-pw", None);
    assert_eq!(message_error(&mut nurse, "juliet@localhost", "n1"), None);
    let (m, skipped) = juliet.recv_until("the nurse's message", |e| {
        e.name == "message" && e.attr("id") == Some("n1")
    });
    assert_eq!(m.attr("type"), Some("chat"));
    assert!(
        !skipped.iter().any(|e| e.name == "message"),
        "a refused message arrived: {skipped:?}"
    );
}

#[test]
fn bad_or_over_bound_privacy_lists_name_user_list_and_line_and_write_nothing() {
    let s = Server::start(&[]);
    let limits = write(
        &s.data,
        "limits.toml",
        "[modules.privacy]\nmax_privacy_lists = 2\nmax_privacy_items = 2\n\
         max_blocklist_items = 2\n",
    );
    let limits = limits.to_str().unwrap();
    // bob is fine; alice's privacy element (line 9 on) is replaced per case.
    let file = |privacy: &str| {
        format!(
            "<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='bob' password='bob-pw'>
      <query xmlns='jabber:iq:privacy'>
        <default name='b'/><list name='b'><item action='deny' order='1'/></list>
      </query>
    </user>
    <user name='alice' password='alice-pw'>
      <query xmlns='jabber:iq:roster'>
        <item jid='bob@localhost' subscription='both'><group>Friends</group></item>
      </query>
{privacy}
    </user>
  </host>
</server-data>
"
        )
    };
    let q = |body: &str| format!("<query xmlns='jabber:iq:privacy'>\n{body}\n</query>");
    let cases = [
        (
            "dup-order.xml",
            q("<list name='l'><item action='deny' order='1'/>\
               <item action='allow' order='1'/></list>"),
            "dup-order.xml:13: alice@localhost's privacy list \"l\": order 1 appears twice \
             (bad-request)",
        ),
        (
            "bad-jid.xml",
            q("<list name='l'><item type='jid' value='a@b@c' action='deny' order='1'/></list>"),
            "bad-jid.xml:13: alice@localhost's privacy list \"l\": ",
        ),
        (
            "no-group.xml",
            q(
                "<list name='l'>\n<item type='group' value='Enemies' action='deny' order='1'/>\
               </list>",
            ),
            "no-group.xml:13: alice@localhost's privacy list \"l\": no roster group \
             \"Enemies\" in the user's roster (item-not-found)",
        ),
        (
            "no-default.xml",
            q("<list name='l'><item action='deny' order='1'/></list>\n<default name='m'/>"),
            "no-default.xml:14: alice@localhost's default privacy list \"m\" is not one of its \
             lists",
        ),
        (
            "twice.xml",
            q("<list name='l'><item action='deny' order='1'/></list>\n\
               <list name='l'><item action='deny' order='2'/></list>"),
            "twice.xml:14: alice@localhost has two privacy lists named \"l\"",
        ),
        (
            "rules.xml",
            q(
                "<list name='l'><item type='group' value='Friends' action='allow' order='1'/>\
               <item type='jid' value='x@localhost' action='deny' order='2'><message/></item>\
               <item action='deny' order='3'/></list>",
            ),
            "rules.xml:13: alice@localhost's privacy list \"l\" has 3 rules, more than 2 \
             (--max-privacy-items)",
        ),
        (
            "blocked.xml",
            q("<list name='urn:xmpp:blocking'>\
               <item type='jid' value='x@localhost' action='deny' order='1'/>\
               <item type='jid' value='y@localhost' action='deny' order='2'/>\
               <item type='jid' value='z@localhost' action='deny' order='3'/></list>"),
            "blocked.xml:13: alice@localhost's privacy list \"urn:xmpp:blocking\" blocks 3 \
             JIDs, more than 2 (--max-blocklist-items)",
        ),
        (
            "lists.xml",
            q("<list name='a'><item action='deny' order='1'/></list>\
               <list name='b'><item action='deny' order='1'/></list>\
               <list name='c'><item action='deny' order='1'/></list>"),
            "lists.xml:8: alice@localhost has 3 privacy lists, more than 2 \
             (--max-privacy-lists)",
        ),
    ];
    for (name, privacy, expected) in cases {
        let path = write(&s.data, name, &file(&privacy));
        let out = import(&s.data, &path, &["--config", limits]);
        assert!(!out.status.success(), "{name} was accepted");
        let msg = stderr(&out);
        assert!(msg.contains(expected), "{name}: {msg}");
        assert!(users(&s).is_empty(), "{name} wrote accounts");
    }
    // The same file with good lists goes in whole.
    let path = write(
        &s.data,
        "good.xml",
        &file(&q(
            "<list name='l'>\
                  <item type='group' value='Friends' action='allow' order='1'/></list>",
        )),
    );
    let out = import(&s.data, &path, &["--config", limits]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 2 accounts (1 roster items, 0 vCards, 2 privacy lists)"),
        "{}",
        stdout(&out)
    );
}

/// Account juliet (password `juliet-old`) whose default list `old` blocks paris@localhost,
/// set over the live protocol; returns her session.
fn juliet_blocking_paris(s: &Server) -> Client {
    s.adduser("juliet", "juliet-old");
    let mut juliet = Client::login(s, "juliet", "juliet-old", None);
    iq_ok(
        &mut juliet,
        "set",
        &format!(
            "<query xmlns='{NS_PRIVACY}'><list name='old'>\
             <item type='jid' value='paris@localhost' action='deny' order='1'/>\
             </list></query>"
        ),
    );
    iq_ok(
        &mut juliet,
        "set",
        &format!("<query xmlns='{NS_PRIVACY}'><default name='old'/></query>"),
    );
    juliet
}

#[test]
fn blocklist_import_shows_in_xep0191_and_replace_swaps_the_lists() {
    let s = Server::start(&[]);
    let mut juliet = juliet_blocking_paris(&s);
    assert_eq!(blocklist(&mut juliet), ["paris@localhost"]);
    juliet.close();

    let file = write(
        &s.data,
        "blocklist.xml",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
           <user name='juliet' password='juliet-new'>
             <query xmlns='jabber:iq:privacy'>
               <default name='urn:xmpp:blocking'/>
               <list name='urn:xmpp:blocking'>
                 <item type='jid' value='tybalt@localhost' action='deny' order='0'/>
                 <item type='jid' value='capulet.example' action='deny' order='1'/>
               </list>
             </query>
           </user>
         </host></server-data>",
    );
    let out = import(&s.data, &file, &["--replace"]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 1 accounts (0 roster items, 0 vCards, 1 privacy lists)"),
        "{}",
        stdout(&out)
    );
    let mut juliet = Client::login(&s, "juliet", "juliet-new", None);
    assert_eq!(
        blocklist(&mut juliet),
        ["capulet.example", "tybalt@localhost"]
    );
    assert_eq!(
        privacy_names(&mut juliet),
        (
            Some("urn:xmpp:blocking".to_string()),
            vec!["urn:xmpp:blocking".to_string()]
        ),
        "the old list is replaced"
    );
    juliet.close();

    // --replace with a user without a privacy element leaves the lists alone.
    let file = write(
        &s.data,
        "again.xml",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
           <user name='juliet' password='juliet-3'/>
         </host></server-data>",
    );
    assert_ok(&import(&s.data, &file, &["--replace"]));
    let mut juliet = Client::login(&s, "juliet", "juliet-3", None);
    assert_eq!(
        blocklist(&mut juliet),
        ["capulet.example", "tybalt@localhost"]
    );
}

/// Prosody 0.12's export (mod_storage_xep0227): a user's XEP-0191 blocklist as
/// `<blocklist xmlns='urn:xmpp:blocking'>` in its `<user/>`, no privacy element.
const PROSODY_PIE: &str = "<?xml version='1.0' encoding='utf-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='juliet' password='juliet-pw'>
      <blocklist xmlns='urn:xmpp:blocking'>
        <item jid='tybalt@localhost'/>
        <item jid='Paris@LocalHost'/>
        <item jid='capulet.example'/>
        <item jid='TYBALT@localhost'/>
      </blocklist>
    </user>
    <user name='tybalt' password='tybalt-pw'/>
    <user name='romeo' password='romeo-pw'>
      <blocklist xmlns='urn:xmpp:blocking'/>
    </user>
  </host>
</server-data>
";

#[test]
fn prosody_blocklist_is_imported_into_xep0191_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(dir.path(), "prosody.xml", PROSODY_PIE);
    let out = import(&data, &file, &[]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with(
            "imported 3 accounts (0 roster items, 0 vCards, 1 privacy lists), skipped 0 existing"
        ),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty(), "no warning: {}", stderr(&out));

    let s = Server::start_on(&data, &[]);
    let mut juliet = Client::online(&s, "juliet", "juliet-pw", Some("balcony"));
    assert_eq!(
        blocklist(&mut juliet),
        ["capulet.example", "paris@localhost", "tybalt@localhost"]
    );
    // No default list before: a new default list urn:xmpp:blocking holds the blocklist.
    assert_eq!(
        privacy_names(&mut juliet),
        (
            Some("urn:xmpp:blocking".to_string()),
            vec!["urn:xmpp:blocking".to_string()]
        )
    );
    let mut tybalt = Client::login(&s, "tybalt", "tybalt-pw", None);
    assert_eq!(
        message_error(&mut tybalt, "juliet@localhost", "t1").as_deref(),
        Some("service-unavailable")
    );
    let mut romeo = Client::online(&s, "romeo", "romeo-pw", None);
    assert_eq!(message_error(&mut romeo, "juliet@localhost", "r1"), None);
    // The empty blocklist imported nothing.
    assert!(blocklist(&mut romeo).is_empty());
    assert_eq!(privacy_names(&mut romeo), (None, vec![]));
}

#[test]
fn blocklist_goes_first_in_the_default_list_of_the_privacy_element() {
    let s = Server::start(&[]);
    // The blocklist comes before the privacy element; nurse is blocked in both.
    let file = write(
        &s.data,
        "both.xml",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
           <user name='juliet' password='juliet-pw'>
             <blocklist xmlns='urn:xmpp:blocking'>
               <item jid='tybalt@localhost'/><item jid='nurse@localhost'/>
             </blocklist>
             <query xmlns='jabber:iq:privacy'>
               <default name='public'/>
               <list name='public'>
                 <item type='jid' value='nurse@localhost' action='deny' order='10'/>
                 <item type='subscription' value='none' action='deny' order='20'><presence-in/></item>
               </list>
               <list name='private'><item action='deny' order='1'/></list>
             </query>
           </user>
         </host></server-data>",
    );
    let out = import(&s.data, &file, &[]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 1 accounts (0 roster items, 0 vCards, 2 privacy lists)"),
        "{}",
        stdout(&out)
    );
    let mut juliet = Client::login(&s, "juliet", "juliet-pw", None);
    assert_eq!(
        privacy_names(&mut juliet),
        (
            Some("public".to_string()),
            vec!["private".to_string(), "public".to_string()]
        )
    );
    let summary: Vec<Vec<String>> = privacy_items(&mut juliet, "public")
        .iter()
        .map(|i| {
            ["order", "type", "value", "action"]
                .iter()
                .map(|a| i.attr(a).unwrap_or("-").to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        summary,
        [
            ["0", "jid", "tybalt@localhost", "deny"],
            ["1", "jid", "nurse@localhost", "deny"],
            ["2", "subscription", "none", "deny"],
        ]
    );
    assert_eq!(
        blocklist(&mut juliet),
        ["nurse@localhost", "tybalt@localhost"]
    );
    assert_eq!(privacy_items(&mut juliet, "private").len(), 1);
}

#[test]
fn bad_or_over_bound_blocklists_name_user_and_line_and_write_nothing() {
    let s = Server::start(&[]);
    let limits = write(
        &s.data,
        "limits.toml",
        "[modules.privacy]\nmax_privacy_lists = 2\nmax_blocklist_items = 2\n",
    );
    let limits = limits.to_str().unwrap();
    // bob is fine; alice's data (line 6 on) is replaced per case.
    let file = |body: &str| {
        format!(
            "<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='bob' password='bob-pw'>
      <blocklist xmlns='urn:xmpp:blocking'><item jid='eve@localhost'/></blocklist>
    </user>
    <user name='alice' password='alice-pw'>
{body}
    </user>
  </host>
</server-data>
"
        )
    };
    let b = |items: &str| format!("<blocklist xmlns='urn:xmpp:blocking'>\n{items}\n</blocklist>");
    let cases = [
        (
            "bad-jid.xml",
            b("<item jid='x@localhost'/>\n<item jid='a@b@c'/>"),
            "bad-jid.xml:9: alice@localhost's blocklist: \"a@b@c\": ",
        ),
        (
            "no-jid.xml",
            b("<item/>"),
            "no-jid.xml:8: alice@localhost's blocklist: an <item/> without jid",
        ),
        (
            "blocked.xml",
            b(
                "<item jid='x@localhost'/><item jid='X@localhost'/><item jid='y@localhost'/>\n\
               <item jid='z@localhost'/>",
            ),
            "blocked.xml:9: alice@localhost's blocklist blocks more than 2 JIDs \
             (--max-blocklist-items)",
        ),
        (
            "merged.xml",
            format!(
                "{}\n<query xmlns='jabber:iq:privacy'><default name='d'/>\
                 <list name='d'><item type='jid' value='y@localhost' action='deny' order='1'/>\
                 </list></query>",
                b("<item jid='x@localhost'/><item jid='z@localhost'/>")
            ),
            "merged.xml:7: alice@localhost's blocklist: privacy list \"d\" would block 3 JIDs, \
             more than 2 (--max-blocklist-items)",
        ),
        (
            "lists.xml",
            format!(
                "<query xmlns='jabber:iq:privacy'>\
                 <list name='a'><item action='deny' order='1'/></list>\
                 <list name='b'><item action='deny' order='1'/></list></query>\n{}",
                b("<item jid='x@localhost'/>")
            ),
            "lists.xml:8: alice@localhost's blocklist needs a new privacy list \
             \"urn:xmpp:blocking\": 3 privacy lists, more than 2 (--max-privacy-lists)",
        ),
    ];
    for (name, body, expected) in cases {
        let path = write(&s.data, name, &file(&body));
        let out = import(&s.data, &path, &["--config", limits]);
        assert!(!out.status.success(), "{name} was accepted");
        let msg = stderr(&out);
        assert!(msg.contains(expected), "{name}: {msg}");
        assert!(users(&s).is_empty(), "{name} wrote accounts");
    }
    let msg = stderr(&import(
        &s.data,
        &write(&s.data, "bad-jid.xml", &file(&b("<item jid='a@b@c'/>"))),
        &[],
    ));
    assert!(msg.contains("(jid-malformed)"), "{msg}");
    // Two JIDs blocked and one list taken over by the blocklist fit.
    let path = write(
        &s.data,
        "good.xml",
        &file(&format!(
            "<query xmlns='jabber:iq:privacy'>\
             <list name='a'><item action='deny' order='1'/></list>\
             <list name='urn:xmpp:blocking'><item type='jid' value='x@localhost' action='deny' \
             order='1'/></list></query>\n{}",
            b("<item jid='x@localhost'/><item jid='z@localhost'/>")
        )),
    );
    let out = import(&s.data, &path, &["--config", limits]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 2 accounts (0 roster items, 0 vCards, 3 privacy lists)"),
        "{}",
        stdout(&out)
    );
    let mut alice = Client::login(&s, "alice", "alice-pw", None);
    assert_eq!(blocklist(&mut alice), ["x@localhost", "z@localhost"]);
    assert_eq!(
        privacy_names(&mut alice).0.as_deref(),
        Some("urn:xmpp:blocking")
    );
}

#[test]
fn replace_with_a_blocklist_replaces_the_lists_and_default() {
    let s = Server::start(&[]);
    let mut juliet = juliet_blocking_paris(&s);
    juliet.close();

    // A blocklist, no privacy element: the account's lists become the file's, the new
    // urn:xmpp:blocking list (the old default is not merged into).
    let user = |body: &str, pw: &str| {
        format!(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
               <user name='juliet' password='{pw}'>{body}</user>
             </host></server-data>"
        )
    };
    let file = write(
        &s.data,
        "blocklist.xml",
        &user(
            "<blocklist xmlns='urn:xmpp:blocking'><item jid='tybalt@localhost'/></blocklist>",
            "juliet-new",
        ),
    );
    let out = import(&s.data, &file, &["--replace"]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 1 accounts (0 roster items, 0 vCards, 1 privacy lists)"),
        "{}",
        stdout(&out)
    );
    let mut juliet = Client::login(&s, "juliet", "juliet-new", None);
    assert_eq!(blocklist(&mut juliet), ["tybalt@localhost"]);
    assert_eq!(
        privacy_names(&mut juliet),
        (
            Some("urn:xmpp:blocking".to_string()),
            vec!["urn:xmpp:blocking".to_string()]
        )
    );
    juliet.close();

    // An empty blocklist is privacy data too: no lists, no default.
    let file = write(
        &s.data,
        "empty.xml",
        &user("<blocklist xmlns='urn:xmpp:blocking'/>", "juliet-3"),
    );
    let out = import(&s.data, &file, &["--replace"]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("imported 1 accounts (0 roster items, 0 vCards, 0 privacy lists)"),
        "{}",
        stdout(&out)
    );
    let mut juliet = Client::login(&s, "juliet", "juliet-3", None);
    assert!(blocklist(&mut juliet).is_empty());
    assert_eq!(privacy_names(&mut juliet), (None, vec![]));
}

/// PRIV-22 with a list changed by another process: the running server decides stanzas for an
/// offline account from its kept copy of the default list only while the stored record is
/// the same, so a list `xmppd import --replace` rewrites (same name, same size) applies to
/// the next stanza, and one it removes stops applying.
#[test]
fn offline_default_list_changed_by_import_applies_at_once() {
    let s = Server::start(&[]);
    let mut juliet = juliet_blocking_paris(&s);
    juliet.close();
    s.adduser("paris", "paris-pw");
    s.adduser("tybalt", "tybalt-pw");
    let mut paris = Client::login(&s, "paris", "paris-pw", None);
    let mut tybalt = Client::login(&s, "tybalt", "tybalt-pw", None);
    let to = "juliet@localhost";
    // Twice: the first decision keeps the list, the second uses the kept copy.
    for id in ["p1", "p2"] {
        assert_eq!(
            message_error(&mut paris, to, id).as_deref(),
            Some("service-unavailable")
        );
    }
    assert_eq!(message_error(&mut tybalt, to, "t1"), None);
    // The same list name, the same size, tybalt instead of paris.
    let file = write(
        &s.data,
        "swap.xml",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
           <user name='juliet' password='juliet-old'>
             <query xmlns='jabber:iq:privacy'>
               <default name='old'/>
               <list name='old'>
                 <item type='jid' value='tybalt@localhost' action='deny' order='1'/>
               </list>
             </query>
           </user>
         </host></server-data>",
    );
    assert_ok(&import(&s.data, &file, &["--replace"]));
    assert_eq!(message_error(&mut paris, to, "p3"), None);
    assert_eq!(
        message_error(&mut tybalt, to, "t2").as_deref(),
        Some("service-unavailable")
    );
    // No lists at all: nobody is refused.
    let file = write(
        &s.data,
        "none.xml",
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
           <user name='juliet' password='juliet-old'>
             <blocklist xmlns='urn:xmpp:blocking'/>
           </user>
         </host></server-data>",
    );
    assert_ok(&import(&s.data, &file, &["--replace"]));
    assert_eq!(message_error(&mut tybalt, to, "t3"), None);
    // Juliet finds what was let through, and nothing that was refused.
    let mut juliet = Client::login(&s, "juliet", "juliet-old", None);
    juliet.send("<presence/>");
    let got = juliet.sync();
    let ids: Vec<&str> = got
        .iter()
        .filter(|e| e.name == "message")
        .filter_map(|e| e.attr("id"))
        .collect();
    for id in ["t1", "p3", "t3"] {
        assert!(ids.contains(&id), "{id} not delivered: {ids:?}");
    }
    for id in ["p1", "p2", "t2"] {
        assert!(!ids.contains(&id), "{id} delivered: {ids:?}");
    }
}
