//! Graceful shutdown: every stream gets `system-shutdown` (CORE-SERR-20) and the process exits.

mod common;

use common::*;

#[test]
fn core_serr_20_sigterm_sends_system_shutdown() {
    let s = Server::start(&["--shards", "2"]);
    s.adduser("u1", "pw-u1-x");
    let mut bound = Client::login(&s, "u1", "pw-u1-x", None);
    let mut fresh = Client::plain(&s);
    fresh.negotiate();
    let status = s.signal_and_wait(libc::SIGTERM).expect("exits");
    assert!(status.success(), "{status:?}");
    bound.expect_stream_error("system-shutdown");
    fresh.expect_stream_error("system-shutdown");
}

/// A connection in each state the server can be in when SIGTERM arrives.
fn connections_in_every_state(s: &Server, per_state: usize) -> Vec<Box<dyn std::any::Any>> {
    use std::io::Write;
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    for _ in 0..per_state {
        // TCP only.
        keep.push(Box::new(std::net::TcpStream::connect(s.c2s).unwrap()));
        // Stream header sent (and features received).
        let mut c = Client::plain(s);
        c.negotiate();
        keep.push(Box::new(c));
        // A TLS ClientHello that stalls halfway.
        let mut t = std::net::TcpStream::connect(s.c2s_tls.unwrap()).unwrap();
        t.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00])
            .unwrap();
        keep.push(Box::new(t));
    }
    for i in 0..per_state {
        // In the middle of SASL: the SCRAM client-first sent, the challenge unanswered.
        let (user, pw) = s.new_user("mid");
        let mut c = Client::secured(s);
        let first = Scram::new("SCRAM-SHA-256", &user, &pw, None).client_first();
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
            b64(first.as_bytes())
        ));
        assert_eq!(c.recv_el().name, "challenge");
        keep.push(Box::new(c));
        // Bound, and (every other one) a session that does not read while output piles up.
        let (user, pw) = s.new_user("bound");
        if i % 2 == 0 {
            keep.push(Box::new(Client::login(s, &user, &pw, None)));
        } else {
            let mut c = Client::login_on(Client::plain_small_rcvbuf(s), &user, &pw, None);
            let body = "x".repeat(4000);
            for n in 0..40 {
                c.send(&format!(
                    "<message to='{user}@{DOMAIN}' id='m{n}' type='chat'><body>{body}</body></message>"
                ));
            }
            keep.push(Box::new(c));
        }
    }
    keep
}

/// Issue 8: SIGTERM must always stop the process. Several hundred connections in every state;
/// the process exits with status 0 within `--shutdown-grace` + 2 s.
#[test]
fn sigterm_stops_within_grace_with_connections_in_every_state() {
    let s = Server::start(&["--shards", "2", "--shutdown-grace", "2"]);
    let keep = connections_in_every_state(&s, 60);
    assert!(keep.len() >= 300, "{}", keep.len());
    let t0 = std::time::Instant::now();
    let status = s
        .signal_and_wait(libc::SIGTERM)
        .expect("exits after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took <= std::time::Duration::from_secs(4),
        "took {took:?}; log tail:\n{}",
        s.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(keep);
}

/// Issue 8: the end of stdin (`--exit-on-stdin-eof`, what test harnesses rely on) stops the
/// process like SIGTERM does, however many times the stop is requested.
#[test]
fn stdin_eof_and_repeated_signals_stop_the_process() {
    let s = Server::start(&["--shards", "2", "--shutdown-grace", "1"]);
    let _keep = connections_in_every_state(&s, 5);
    let pid = s.pid() as i32;
    for _ in 0..3 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    s.close_stdin();
    let status = s.signal_and_wait(libc::SIGTERM).expect("exits");
    assert!(status.success(), "{status:?}");
}

/// Issue 8: a frozen shard must not keep the process alive: after SIGTERM the healthy shard
/// closes its streams, and the process exits (with a failure status, since a shard did not
/// stop) within `--shutdown-grace` + 2 s. The freeze is a test-build hook
/// (`XMPPD_TEST_FREEZE_SHARD`).
#[test]
fn sigterm_stops_the_process_with_a_frozen_shard() {
    let s = Server::start_env(
        &["--shards", "2", "--shutdown-grace", "1"],
        &[("XMPPD_TEST_FREEZE_SHARD", "1")],
    );
    // Some of these land on the frozen shard's listener, some on the live one.
    let keep: Vec<Client> = (0..6)
        .map(|_| {
            let mut c = Client::plain(&s);
            c.open_stream();
            c
        })
        .collect();
    let t0 = std::time::Instant::now();
    let status = s
        .signal_and_wait(libc::SIGTERM)
        .expect("exits despite the frozen shard");
    let took = t0.elapsed();
    assert!(!status.success(), "a stuck shard is a failure: {status:?}");
    assert!(took <= std::time::Duration::from_secs(3), "took {took:?}");
    assert!(s.log().contains("did not stop"), "{}", s.log());
    drop(keep);
}
