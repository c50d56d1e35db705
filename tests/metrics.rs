//! The operator's metrics endpoint (issue 13): `--metrics-listen` serves the Prometheus text
//! format, and each documented family moves with what it counts.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

/// Scrapes `/metrics`: the status, the content type and the samples by `name{labels}`.
fn scrape(addr: SocketAddr, path: &str) -> (u16, String, HashMap<String, f64>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    let mut samples = HashMap::new();
    let lines = if status == 200 { body } else { "" };
    for line in lines
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        samples.insert(name.to_string(), value.parse::<f64>().unwrap());
    }
    (status, ctype, samples)
}

fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:?}", m.keys()))
}

/// Every family documented in docs/METRICS.md is exported, in the text format; the
/// connection, login, stanza, routing and storage figures follow what the server did.
#[test]
fn metrics_endpoint_exports_the_documented_families_and_they_count() {
    let server = Server::start(&["--shards", "2", "--metrics-listen", "127.0.0.1:0"]);
    let addr = server.metrics.expect("metrics port");
    let (status, ctype, m) = scrape(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/METRICS.md")).unwrap();
    for family in [
        "xmppd_connections",
        "xmppd_stanzas_in_total",
        "xmppd_stanzas_out_total",
        "xmppd_auth_total",
        "xmppd_shard_congestion_events_total",
        "xmppd_shard_inbox_bytes",
        "xmppd_shard_inbox_messages",
        "xmppd_routing_hop_seconds",
        "xmppd_storage_commit_seconds",
        "xmppd_storage_commits_total",
        "xmppd_lmdb_used_bytes",
        "xmppd_lmdb_map_bytes",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            m.keys().any(|k| k == family
                || k.starts_with(&format!("{family}{{"))
                || k.starts_with(&format!("{family}_"))),
            "{family} not exported"
        );
        assert!(
            doc.contains(&format!("`{family}`")),
            "{family} not documented"
        );
    }
    assert!(metric(&m, "process_resident_memory_bytes") > 0.0);
    assert!(metric(&m, "xmppd_lmdb_used_bytes") > 0.0);
    let est = "xmppd_connections{transport=\"tcp\",state=\"established\"}";
    assert_eq!(metric(&m, est), 0.0);

    // Users homed on different shards, so that their messages cross.
    let a = User::on_shard(&server, "ma", 0, 2);
    let b = User::on_shard(&server, "mb", 1, 2);
    let mut ca = a.online(&server, "r");
    let mut cb = b.online(&server, "r");
    // A wrong password: one failure.
    let mut bad = Client::secured(&server);
    let f = bad.auth_plain(&a.local, "wrong");
    assert_eq!(f.name, "failure");
    ca.send(&format!(
        "<message to='{}' type='chat'><body>hi</body></message>",
        cb.full()
    ));
    cb.recv_until("message", |e| e.name == "message");
    // A vCard set: one durable commit at least.
    ca.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></iq>");
    ca.recv_until("vcard result", |e| e.attr("id") == Some("v1"));

    let (_, _, m) = scrape(addr, "/metrics");
    assert_eq!(metric(&m, est), 2.0, "two sessions");
    // The harness logs in with SCRAM-SHA-256.
    assert_eq!(
        metric(
            &m,
            "xmppd_auth_total{method=\"SCRAM-SHA-256\",outcome=\"success\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(&m, "xmppd_auth_total{method=\"PLAIN\",outcome=\"failure\"}"),
        1.0
    );
    assert!(metric(&m, "xmppd_stanzas_in_total{kind=\"message\"}") >= 1.0);
    assert!(metric(&m, "xmppd_stanzas_out_total{kind=\"message\"}") >= 1.0);
    assert!(metric(&m, "xmppd_stanzas_in_total{kind=\"iq\"}") >= 1.0);
    assert!(metric(&m, "xmppd_routing_hop_seconds_count") >= 1.0);
    assert_eq!(
        metric(&m, "xmppd_routing_hop_seconds_bucket{le=\"+Inf\"}"),
        metric(&m, "xmppd_routing_hop_seconds_count")
    );
    assert!(metric(&m, "xmppd_storage_commit_seconds_count") >= 1.0);
    assert!(metric(&m, "xmppd_storage_commits_total") >= 1.0);

    // Sessions that end leave the gauge.
    ca.close();
    cb.close();
    drop(bad);
    let mut gone = false;
    for _ in 0..100 {
        let (_, _, m) = scrape(addr, "/metrics");
        let authenticating = "xmppd_connections{transport=\"tcp\",state=\"authenticating\"}";
        if metric(&m, est) == 0.0 && metric(&m, authenticating) == 0.0 {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gone, "the connections gauge came back to 0");

    let (status, _, _) = scrape(addr, "/elsewhere");
    assert_eq!(status, 404);
}

/// Without `--metrics-listen` there is no metrics port.
#[test]
fn metrics_are_off_by_default() {
    let server = Server::start(&[]);
    assert!(server.metrics.is_none());
}
