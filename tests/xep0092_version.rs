//! XEP-0092 Software Version of the server.

mod common;

use common::*;

#[test]
fn version_of_server() {
    let s = Server::shared();
    let (u, p) = s.new_user("ver");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>");
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    let q = r.child("query", "jabber:iq:version").unwrap();
    assert_eq!(
        q.child("name", "jabber:iq:version").unwrap().text(),
        "xmppd"
    );
    assert!(!q
        .child("version", "jabber:iq:version")
        .unwrap()
        .text()
        .is_empty());
}
