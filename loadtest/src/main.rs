//! xmppd-loadtest: a black-box load generator for any XMPP server.

fn main() {
    eprintln!("xmppd-loadtest: not built yet");
    std::process::exit(2);
}
