//! Issue 8 (C): the send-queue policy. A recipient whose send queue is full is not
//! disconnected because others send it more than its link drains: their stanzas are bounced
//! with `resource-constraint` (wait). Only a client that reads nothing for the grace period
//! is disconnected.

mod common;

use common::*;

const FLOOD: usize = 48;
const BODY: usize = 250_000;

#[test]
fn issue_8c_flooding_a_slow_reader_bounces_to_the_sender_reader_stays() {
    // Default --max-send-queue (1 MiB soft, 4 MiB hard before the fix).
    let s = Server::start(&["--shards", "1"]);
    s.adduser("flooder", "flooderpw");
    s.adduser("slow", "slowpw1");
    let mut slow = Client::login_on(Client::plain_small_rcvbuf(&s), "slow", "slowpw1", Some("r"));
    slow.send("<presence/>");
    assert_eq!(slow.recv_el().name, "presence");
    let mut a = Client::online(&s, "flooder", "flooderpw", None);
    // 12 MB at once, faster than the reader (which does not read yet) drains: more than the
    // hard limit (4 MiB) and the kernel buffers together.
    let body = "f".repeat(BODY);
    for i in 0..FLOOD {
        a.send(&format!(
            "<message to='slow@localhost/r' type='chat' id='fl{i}'><body>{body}</body></message>"
        ));
    }
    let before = a.sync();
    let bounced: Vec<_> = before
        .iter()
        .filter(|e| e.attr("type") == Some("error"))
        .collect();
    assert!(!bounced.is_empty(), "no error to the sender: {before:?}");
    for e in &bounced {
        let (cond, ty, _) = stanza_error(e).unwrap();
        assert_eq!(
            (cond.as_str(), ty.as_str()),
            ("resource-constraint", "wait")
        );
    }
    // The reader stays connected and gets every message that was not bounced, in order.
    let mut got = Vec::new();
    while got.len() + bounced.len() < FLOOD {
        let e = slow.recv_el();
        assert_eq!(e.name, "message", "{e:?}");
        got.push(e.attr("id").unwrap().to_string());
    }
    let mut all: Vec<String> = got.clone();
    all.extend(bounced.iter().map(|e| e.attr("id").unwrap().to_string()));
    all.sort_by_key(|id| id[2..].parse::<usize>().unwrap());
    let expected: Vec<String> = (0..FLOOD).map(|i| format!("fl{i}")).collect();
    assert_eq!(
        all, expected,
        "every message delivered or bounced, none both"
    );
    slow.sync();
    assert!(!s.log().contains("send queue overflow"), "{}", s.log());
}
