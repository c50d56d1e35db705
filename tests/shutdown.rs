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
