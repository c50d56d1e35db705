//! xmppd-loadtest: a black-box load generator for any XMPP server.

mod bosh;
mod caps;
mod framing;
mod login;
mod net;
mod provision;
mod scenarios;
mod scram;
mod stats;
mod ws;

use std::io::{BufWriter, Write as _};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use login::{LoginConfig, Mech};
use net::{Target, Transport};
use scenarios::{phase, progress, sleep_bounded, wait_until, Launcher, Shared};
use stats::{CpuMark, Latency, Report};

const ABOUT: &str = "Black-box XMPP load generator: drives any XMPP server (xmppd, Prosody, \
ejabberd) over loopback TCP, WebSocket or BOSH with thread-per-core epoll workers.";

const LONG_ABOUT: &str = "Black-box XMPP load generator: drives any XMPP server (xmppd, Prosody, \
ejabberd) over loopback TCP, WebSocket or BOSH with thread-per-core epoll workers (--threads).

Transports (--transport): tcp (RFC 6120, the default), websocket (RFC 7395 over plain ws://: \
--port is then the server's HTTP port, the endpoint is --ws-path, subprotocol xmpp; each \
connection makes the HTTP/1.1 upgrade, then sends every element as one masked text frame and \
takes every server text message as one element, answering pings) or bosh (XEP-0124 with \
XEP-0206 over plain http://: --port is the server's HTTP port, the endpoint --bosh-path; each \
session is created with hold='1' and wait=--bosh-wait, SASL ends with a restart request, and \
one request is kept held by the server at all times so that it can push stanzas in its \
response; the stanzas sent in one loop turn go out together in one request body, on the \
session's second HTTP/1.1 keep-alive connection when the first holds a request (a session \
never has more than two requests out, one per connection; one that only receives, like an \
idle one, opens only one connection); a response's <body/> children are the server's \
stanzas; a type='terminate' response is an error; closing sends a terminate request if a \
connection is free). Neither websocket nor bosh has STARTTLS, so --starttls is refused and the server must allow \
authentication without TLS. Every scenario runs over any of them; login latency over \
WebSocket includes the upgrade, over BOSH the session creation; chat latency over BOSH runs \
from the send to the delivery in a held response. The fd limit caps sessions at 1 socket each \
(2 over BOSH for the scenarios that send after login: chat, presence, muc, pep).

Every scenario logs accounts {prefix}{i} in (stream, optional STARTTLS, SASL PLAIN / SCRAM-SHA-1 / \
SCRAM-SHA-256, bind, session if required), runs a bounded load and ends by itself (at the latest \
after --timeout seconds).

ops: the unit of work each scenario counts in its measured window: chat = messages delivered, \
login = completed logins (connect..bound), idle = sessions held, presence = presence stanzas \
received, muc = groupchat messages received (deliveries: one room message is delivered to every \
occupant, the sender's own reflected copy included), pep = PEP notifications received by \
contacts (one publish is delivered to each of the publisher's roster contacts; the owner's own \
copies are not counted).

muc: the first occupant of each room creates it (instant room), the others join, then every \
occupant sends groupchat messages: at saturation (default) each keeps at most --window of its own \
messages in flight, the room's reflection of a message to its sender releasing the next, for \
--rounds messages each (the window ends when all were delivered) or, with --rounds 0, for \
--warmup + --duration seconds; with --rate R, R room messages/s in total on a fixed timetable \
spread evenly over rooms and occupants (R × occupants deliveries/s).

pep (XEP-0163 with XEP-0115 caps; needs the rosters of `provision`, as presence): every \
session sends initial presence with caps whose disco#info includes \
http://jabber.org/protocol/tune+notify and answers every disco#info query it gets (from any \
sender, echoing the node); after the logins the generator waits until nothing arrived for \
--settle seconds, then every user publishes tune items to its own PEP service: at saturation \
(default) each keeps at most --window publishes in flight, the IQ result releasing the next, \
for --rounds publishes each or, with --rounds 0, for --warmup + --duration seconds; with \
--rate R, R publishes/s in total on a fixed timetable (R × contacts notifications/s). \
Latency runs from the send time stamped into the item id (the intended one with --rate). \
Before that, user 1 logs in alone so that the server has met the clients' caps ver before \
the others' presence arrives (--cold-caps: all at once), and every user publishes a first \
item, one user at a time, which creates its node (uncounted). Not counted either: the \
owner's own copies and a second copy of the same item to the same contact (reported as \
duplicates); contact pairs that never got a notification are reported as silent_pairs.

Server CPU per op: (CPU time of --server-pid over the measured window: the run time of its threads from /proc/PID/task/*/schedstat, or utime+stime in clock ticks if threads came or went) / ops, in µs: the cost \
of one op on the server. Generator CPU per op is the same for this process (getrusage). If the \
generator's figure approaches the server's, the generator may be the bottleneck. Server CPU % is \
utilisation of one core over the window. Hypervisor steal is the share of the machine's CPU time \
(all CPUs, /proc/stat) that a virtual machine's host gave to others during the window: a run with \
steal shared its CPUs, and its CPU figures should not be compared with one without.

Latency (µs, HdrHistogram): closed loop from the actual send time; open loop (--rate) from the \
intended send time on a fixed timetable (coordinated-omission corrected).

Output: a table on stdout; with --json also one line starting with '{' holding the results.

Exit status: 0 run completed; 1 run failed (logins failed, timeout before completion, I/O error); \
2 bad arguments; 3 feature not supported by the server (muc without a MUC service; chat \
--blocklist N without XEP-0191 blocking; pep when a publish is answered with an error or no \
notification arrives within the warm-up; bosh when the session creation request is answered \
HTTP 404, 405 or 501: no BOSH endpoint at --bosh-path).";

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "xmppd-loadtest", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Server address (IPv4).
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: Ipv4Addr,
    /// Server port: the c2s port, or with --transport websocket or bosh the server's HTTP port.
    #[arg(long, global = true, default_value_t = 5222)]
    port: u16,
    /// How XMPP is carried: tcp (RFC 6120), websocket (RFC 7395, ws:// on --port at
    /// --ws-path), bosh (XEP-0124/XEP-0206, http:// on --port at --bosh-path).
    #[arg(long, global = true, value_enum, default_value = "tcp")]
    transport: TransportArg,
    /// WebSocket endpoint path (--transport websocket).
    #[arg(long, global = true, default_value = "/xmpp-websocket")]
    ws_path: String,
    /// BOSH endpoint path (--transport bosh).
    #[arg(long, global = true, default_value = "/http-bind")]
    bosh_path: String,
    /// BOSH `wait` (--transport bosh): the longest the server holds a request, in seconds;
    /// an idle session's held request is answered empty after it and at once replaced.
    #[arg(long, global = true, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    bosh_wait: u32,
    /// XMPP domain of the accounts (stream `to`).
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    /// Negotiate STARTTLS (any certificate is accepted). Default: plaintext.
    #[arg(long, global = true)]
    starttls: bool,
    /// SASL mechanism.
    #[arg(long, global = true, value_enum, default_value = "scram-sha-1")]
    mech: Mech,
    /// Account name prefix: accounts are {prefix}{i}, i = 1..=N.
    #[arg(long, global = true, default_value = "user")]
    user_prefix: String,
    /// Password of every account.
    #[arg(long, global = true, default_value = "pass")]
    password: String,
    /// Worker threads, each with its own connections and epoll loop.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Server process id: its CPU (/proc/PID/task/*/schedstat, /proc/PID/stat) and RSS (/proc/PID/status) are reported.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Federation (chat only): address of a second server; the receivers (users P+1..2P) log
    /// into it, as {prefix}{i}@--peer-domain, and the senders address them there, so every
    /// message crosses a server-to-server stream from --domain to --peer-domain. TCP only.
    #[arg(long, global = true, requires = "peer_domain")]
    peer_host: Option<Ipv4Addr>,
    /// Federation: the second server's c2s port [default: --port].
    #[arg(long, global = true, requires = "peer_domain")]
    peer_port: Option<u16>,
    /// Federation: the second server's XMPP domain (the receivers' accounts).
    #[arg(long, global = true)]
    peer_domain: Option<String>,
    /// Federation: the second server's process id; its CPU is read like --server-pid's and
    /// reported per op beside it (server_cpu_us_per_op is then the sum of both).
    #[arg(long, global = true)]
    peer_pid: Option<u32>,
    /// Also print one JSON line (starting with '{') per run.
    #[arg(long, global = true)]
    json: bool,
    /// Server name put in the report.
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Spread source addresses over 127.0.0.1..127.0.0.N [default: 1 per 20000 connections].
    #[arg(long, global = true)]
    src_ips: Option<u32>,
    /// Hard bound for the whole run in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    /// Logins in flight at once (all scenarios' login phase; login storm mode).
    #[arg(long, global = true, default_value_t = 100)]
    concurrency: usize,
    /// Poll the sockets without sleeping: each worker keeps a core busy. Over loopback a
    /// send to a sleeping receiver also pays for waking it (an inter-processor interrupt,
    /// costly in a VM), which a remote client never charges the server; spinning measures
    /// the server's latency without that. Give the workers cores of their own.
    #[arg(long, global = true)]
    spin: bool,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    /// XMPP over TCP (RFC 6120).
    Tcp,
    /// XMPP over WebSocket (RFC 7395), plain ws://.
    Websocket,
    /// XMPP over BOSH (XEP-0124/XEP-0206), plain http://.
    Bosh,
}

impl TransportArg {
    fn name(self) -> &'static str {
        match self {
            TransportArg::Tcp => "tcp",
            TransportArg::Websocket => "websocket",
            TransportArg::Bosh => "bosh",
        }
    }
}

/// Scenarios.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// One-to-one chat between pairs: users 1..P send to P+1..2P; ops = messages delivered.
    Chat(ChatArgs),
    /// Login storm or fixed login rate; ops = completed logins (latency = connect..bound).
    Login(LoginArgs),
    /// Idle sessions: server RSS per session.
    Idle(IdleArgs),
    /// Presence broadcast to rosters (needs provisioned rosters); ops = presence received.
    Presence(PresenceArgs),
    /// MUC groupchat at saturation or a fixed --rate; ops = groupchat deliveries. Exit 3 without MUC.
    Muc(MucArgs),
    /// PEP (XEP-0163) tune publishing to rosters with caps-filtered notifications (needs
    /// provisioned rosters); ops = notifications received by contacts. Exit 3 without PEP.
    Pep(PepArgs),
    /// Write provisioning files (XEP-0227 and/or a plain list) with symmetric ring rosters.
    Provision(ProvisionArgs),
}

/// `chat` options.
#[derive(Args, Debug)]
struct ChatArgs {
    /// Sender→receiver pairs (2P sessions).
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Closed loop: messages in flight per sender; each receipt releases the next.
    #[arg(long, default_value_t = 16)]
    window: u32,
    /// Open loop: total messages/s over all senders on a fixed timetable (latency from intended time).
    #[arg(long)]
    rate: Option<f64>,
    /// Warmup seconds (load runs, nothing counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// After the measured window, stop sending and wait up to this many seconds for the
    /// messages in flight; those neither delivered nor bounced by then are reported as lost.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Give every account a blocklist of N JIDs (blocked{i}@blocked.example, none of them in
    /// the test) before loading: after login each account unblocks all, then blocks them with
    /// XEP-0191 IQs of at most 200 items, each awaited. 0: no blocking IQs at all. Exit 3 if
    /// the server answers service-unavailable or feature-not-implemented.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=10000))]
    blocklist: u16,
}

/// `login` options.
#[derive(Args, Debug)]
struct LoginArgs {
    /// Accounts to log in (each once).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Fixed arrival rate (logins/s) instead of the storm; latency from the intended start.
    #[arg(long)]
    rate: Option<f64>,
    /// Send initial presence after bind.
    #[arg(long)]
    presence: bool,
    /// Keep sessions open until the end instead of closing each after bind.
    #[arg(long)]
    keep: bool,
    /// Log everyone in once unmeasured first (fills the SCRAM SaltedPassword cache).
    #[arg(long)]
    prime: bool,
}

/// `idle` options.
#[derive(Args, Debug)]
struct IdleArgs {
    /// Sessions to hold.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Send initial presence.
    #[arg(long)]
    presence: bool,
    /// Seconds to let the server settle before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Seconds to hold the sessions after measuring.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
}

/// `presence` options.
#[derive(Args, Debug)]
struct PresenceArgs {
    /// Users (must match provisioning).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Contacts per user (must match provisioning).
    #[arg(long, default_value_t = 50)]
    contacts: usize,
    /// Presence broadcasts per user in the measured phase.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

/// `muc` options.
#[derive(Args, Debug)]
struct MucArgs {
    /// Rooms room1..roomM.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Occupants per room.
    #[arg(long, default_value_t = 10)]
    occupants: usize,
    /// Saturation (no --rate): groupchat messages each occupant sends; the measured window
    /// ends when all came back to all occupants. 0: no count, send for --warmup, then measure
    /// --duration seconds (the same window for every server, however fast).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Saturation: own messages in flight per occupant; its own copy reflected by the room
    /// releases the next (a bounced one too).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Saturation: also at most this many messages in flight per room (per room and worker
    /// thread with --threads > 1), the room's occupants taking turns; 0: no room limit.
    #[arg(long, default_value_t = 0)]
    room_window: u32,
    /// Fixed rate (open loop): room messages/s in total, spread evenly over the rooms and
    /// over each room's occupants as senders; latency from the intended send time.
    /// Deliveries/s = rate × occupants.
    #[arg(long)]
    rate: Option<f64>,
    /// Warmup seconds (--rate, or --rounds 0): load runs, nothing counted.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds (--rate, or --rounds 0).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// MUC service [default: conference.{domain}].
    #[arg(long)]
    muc_service: Option<String>,
}

/// `pep` options.
#[derive(Args, Debug)]
struct PepArgs {
    /// Users (must match provisioning).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Contacts per user (must match provisioning): each publish notifies this many.
    #[arg(long, default_value_t = 50)]
    contacts: usize,
    /// Saturation (no --rate): publishes per user; the measured window ends when all were
    /// delivered to all contacts. 0: no count, publish for --warmup, then measure --duration
    /// seconds (the same window for every server, however fast).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Saturation: publishes in flight per user; the publish's IQ result releases the next.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Fixed rate (open loop): publishes/s in total, user by user; latency from the intended
    /// send time. Notifications/s = rate × contacts.
    #[arg(long)]
    rate: Option<f64>,
    /// Warmup seconds (--rate, or --rounds 0): load runs, nothing counted. A first
    /// notification must arrive within it (at least 1 s), with --rounds N too.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds (--rate, or --rounds 0).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// After the logins, wait until no presence or caps query arrived for this many seconds
    /// before publishing (the servers' caps queries and answers settle).
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Log everyone in at once, so that the server first meets the clients' caps `ver`
    /// in the middle of the presence storm, with thousands of contact pairs waiting on one
    /// disco#info query. Default: user 1 logs in alone first and the others only once the
    /// server asked it (or 2 s passed), as on a server that has met this client before.
    #[arg(long)]
    cold_caps: bool,
}

/// `provision` options.
#[derive(Args, Debug)]
struct ProvisionArgs {
    /// Users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Roster size per user (R/2 before and R/2 after on a ring: symmetric for even R).
    #[arg(long, default_value_t = 50)]
    contacts: usize,
    /// XEP-0227 output file (ejabberd import_piefxis format).
    #[arg(long)]
    out_xep0227: Option<std::path::PathBuf>,
    /// Plain list output file: `user@domain password contact1,contact2`.
    #[arg(long)]
    out_list: Option<std::path::PathBuf>,
}

/// Exit statuses.
const EXIT_FAILED: u8 = 1;
const EXIT_UNSUPPORTED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Provision(a) = &cli.cmd {
        return provision(&cli.common, a);
    }
    let c = &cli.common;
    match c.transport {
        TransportArg::Websocket if c.starttls => {
            eprintln!(
                "xmppd-loadtest: --starttls with --transport websocket: RFC 7395 has no \
                 STARTTLS (and the generator speaks ws://, not wss://)"
            );
            return ExitCode::from(2);
        }
        TransportArg::Bosh if c.starttls => {
            eprintln!(
                "xmppd-loadtest: --starttls with --transport bosh: XEP-0206 has no STARTTLS \
                 (and the generator speaks http://, not https://)"
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    if c.peer_domain.is_some() && !matches!(cli.cmd, Cmd::Chat(_)) {
        eprintln!("xmppd-loadtest: --peer-domain (federation) is for the chat scenario only");
        return ExitCode::from(2);
    }
    let limit = raise_nofile();
    println!("RLIMIT_NOFILE: {limit}");
    let threads = c.threads.max(1);
    let res = match &cli.cmd {
        Cmd::Chat(a) => chat(c, threads, a, limit),
        Cmd::Login(a) => login(c, threads, a, limit),
        Cmd::Idle(a) => idle(c, threads, a, limit),
        Cmd::Presence(a) => presence(c, threads, a, limit),
        Cmd::Muc(a) => muc(c, threads, a, limit),
        Cmd::Pep(a) => pep(c, threads, a, limit),
        Cmd::Provision(_) => Ok(ExitCode::SUCCESS),
    };
    if let Some(why) = bosh::no_endpoint() {
        println!("transport bosh: not supported by this server ({why})");
        return ExitCode::from(EXIT_UNSUPPORTED);
    }
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xmppd-loadtest: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Raises the soft fd limit to the hard one; returns the resulting soft limit.
fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}

/// Sockets one session may use: 1, or over BOSH 2 for a session that sends after login
/// (`sends`; its second HTTP connection carries what it sends while the first holds a request).
fn sockets_per_session(c: &Common, sends: bool) -> u64 {
    if c.transport == TransportArg::Bosh && sends {
        2
    } else {
        1
    }
}

/// Caps `n` sessions of `per` sockets each to what the fd limit allows, saying so.
fn cap_sessions(n: usize, limit: u64, threads: usize, per: u64) -> usize {
    let reserve = 32 + 4 * threads as u64;
    let max = (limit.saturating_sub(reserve) / per.max(1)) as usize;
    if n > max {
        eprintln!(
            "xmppd-loadtest: {n} sessions of {per} socket(s) need more file descriptors than \
             RLIMIT_NOFILE {limit} allows; capping to {max}"
        );
        max
    } else {
        n
    }
}

fn target(c: &Common, sessions: usize) -> Target {
    // A BOSH session may use two connections.
    let conns = sessions * sockets_per_session(c, true) as usize;
    Target {
        host: c.host,
        port: c.port,
        src_ips: c
            .src_ips
            .unwrap_or(conns.div_ceil(20_000) as u32)
            .clamp(1, 254),
        login: LoginConfig {
            domain: c.domain.clone(),
            starttls: c.starttls,
            mech: c.mech,
        },
        prefix: c.user_prefix.clone(),
        password: c.password.clone(),
        tls: net::tls_config(),
        spin: c.spin,
        transport: match c.transport {
            TransportArg::Websocket => Transport::WebSocket {
                path: c.ws_path.clone(),
            },
            TransportArg::Bosh => Transport::Bosh {
                path: c.bosh_path.clone(),
                wait: c.bosh_wait,
            },
            TransportArg::Tcp => Transport::Tcp,
        },
        peer: None,
    }
}

fn emit(c: &Common, r: &Report) {
    let mut r = r.clone();
    r.params
        .insert("transport".into(), c.transport.name().into());
    print!("{}", r.table());
    if c.json {
        println!("{}", r.json_line());
    }
    let _ = std::io::stdout().flush();
}

fn first_error(sh: &Shared) -> String {
    sh.first_error
        .lock()
        .ok()
        .and_then(|e| e.clone())
        .unwrap_or_default()
}

/// Users 1..=n dealt round-robin to `threads`.
fn deal(users: impl Iterator<Item = usize>, t: usize, threads: usize) -> Vec<usize> {
    users
        .enumerate()
        .filter(|(k, _)| k % threads == t)
        .map(|(_, u)| u)
        .collect()
}

/// Waits until all `n` sessions are established (or failed, or the deadline).
fn wait_logged_in(sh: &Shared, n: u64, deadline: Instant) -> Result<(), String> {
    let ok = wait_until(deadline, || {
        sh.established.load(Relaxed) + sh.failed.load(Relaxed) >= n
    });
    let est = sh.established.load(Relaxed);
    if !ok || est < n {
        return Err(format!(
            "only {est}/{n} sessions logged in ({} failed{}); first error: {}",
            sh.failed.load(Relaxed),
            if ok { "" } else { ", timeout" },
            first_error(sh)
        ));
    }
    Ok(())
}

/// The measured phase of the count-driven scenarios (presence, muc): run until `expected`
/// operations were seen or the deadline, then stop the workers and report the window.
/// Returns the report and whether the count was reached.
fn measure_until(
    c: &Common,
    sh: &Shared,
    h: Vec<std::thread::JoinHandle<scenarios::Out>>,
    deadline: Instant,
    expected: u64,
    scenario: &str,
    mode: &str,
) -> (Report, bool) {
    let mark = CpuMark::now(c.server_pid, c.peer_pid);
    let t0 = Instant::now();
    sh.measuring.store(true, Relaxed);
    sh.phase.store(phase::RUN, Relaxed);
    let complete = wait_until(deadline, || sh.ops.load(Relaxed) >= expected);
    let window = t0.elapsed();
    let cpu = mark.since(c.server_pid, c.peer_pid);
    sh.measuring.store(false, Relaxed);
    (
        stop_and_report(c, sh, h, scenario, mode, window, cpu),
        complete,
    )
}

/// The measured phase of the time-driven scenarios (chat, muc with --rate or --rounds 0):
/// start the load, let it run `warmup` seconds uncounted, count `duration` seconds, then stop
/// the workers and report that window.
#[allow(clippy::too_many_arguments)]
fn measure_for(
    c: &Common,
    sh: &Shared,
    h: Vec<std::thread::JoinHandle<scenarios::Out>>,
    warmup: f64,
    duration: f64,
    deadline: Instant,
    scenario: &str,
    mode: &str,
) -> Report {
    sh.phase.store(phase::RUN, Relaxed);
    progress(&format!("{scenario}: warmup {warmup}s"));
    sleep_bounded(Duration::from_secs_f64(warmup.max(0.0)), deadline);
    measure_window(c, sh, h, duration, deadline, scenario, mode)
}

/// The measured window of the time-driven scenarios, the load already running: count
/// `duration` seconds, then stop the workers and report that window.
fn measure_window(
    c: &Common,
    sh: &Shared,
    h: Vec<std::thread::JoinHandle<scenarios::Out>>,
    duration: f64,
    deadline: Instant,
    scenario: &str,
    mode: &str,
) -> Report {
    let mark = CpuMark::now(c.server_pid, c.peer_pid);
    let t0 = Instant::now();
    sh.measuring.store(true, Relaxed);
    progress(&format!("{scenario}: measuring {duration}s"));
    sleep_bounded(Duration::from_secs_f64(duration.max(0.0)), deadline);
    sh.measuring.store(false, Relaxed);
    let window = t0.elapsed();
    let cpu = mark.since(c.server_pid, c.peer_pid);
    stop_and_report(c, sh, h, scenario, mode, window, cpu)
}

/// Stop the workers, collect their results and build the report of a measured window.
fn stop_and_report(
    c: &Common,
    sh: &Shared,
    h: Vec<std::thread::JoinHandle<scenarios::Out>>,
    scenario: &str,
    mode: &str,
    window: Duration,
    cpu: stats::CpuUse,
) -> Report {
    sh.phase.store(phase::STOP, Relaxed);
    let out = scenarios::join(h);
    Report::new(
        scenario,
        mode,
        &c.label,
        sh.ops.load(Relaxed),
        window,
        cpu,
        Latency::of(&out.hist),
        out.errors,
    )
}

fn stop_and_fail(
    sh: &Shared,
    h: Vec<std::thread::JoinHandle<scenarios::Out>>,
    msg: String,
) -> Result<ExitCode, String> {
    sh.phase.store(phase::STOP, Relaxed);
    scenarios::join(h);
    Err(msg)
}

fn chat(c: &Common, threads: usize, a: &ChatArgs, limit: u64) -> Result<ExitCode, String> {
    let pairs = cap_sessions(2 * a.pairs, limit, threads, sockets_per_session(c, true)) / 2;
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let mut tgt = target(c, 2 * pairs);
    if let Some(domain) = &c.peer_domain {
        if c.transport != TransportArg::Tcp {
            return Err("--peer-domain: federation runs are TCP only".into());
        }
        tgt.peer = Some(net::Peer {
            host: c.peer_host.unwrap_or(c.host),
            port: c.peer_port.unwrap_or(c.port),
            domain: domain.clone(),
            first_user: pairs + 1,
        });
    }
    let cfg = scenarios::ChatCfg {
        pairs,
        window: a.window.max(1),
        rate: a.rate,
        body_bytes: a.body_bytes,
        blocklist: usize::from(a.blocklist),
        peer_domain: c.peer_domain.clone(),
    };
    let (sh2, dom, pre, conc) = (
        sh.clone(),
        c.domain.clone(),
        c.user_prefix.clone(),
        c.concurrency,
    );
    let threads = threads.min(pairs.max(1));
    let h = scenarios::spawn(
        threads,
        &tgt,
        epoch,
        move |t| scenarios::Chat::new(sh2.clone(), cfg.clone(), t, threads, &dom, &pre, conc),
        scenarios::Chat::out,
    );
    progress(&format!("chat: logging in {} sessions", 2 * pairs));
    if let Err(e) = wait_logged_in(&sh, 2 * pairs as u64, deadline) {
        return stop_and_fail(&sh, h, e);
    }
    if a.blocklist > 0 {
        let n = 2 * pairs as u64;
        progress(&format!(
            "chat: setting up {}-entry blocklists on {n} accounts",
            a.blocklist
        ));
        let unsupported = || sh.unsupported.lock().ok().and_then(|e| e.clone());
        let ok = wait_until(deadline, || {
            sh.progress.load(Relaxed) >= n || unsupported().is_some() || sh.failed.load(Relaxed) > 0
        });
        if let Some(cond) = unsupported() {
            sh.phase.store(phase::STOP, Relaxed);
            scenarios::join(h);
            println!(
                "chat: not supported by this server (blocking command, urn:xmpp:blocking: \
                 <{cond}/>)"
            );
            return Ok(ExitCode::from(EXIT_UNSUPPORTED));
        }
        if sh.failed.load(Relaxed) > 0 {
            let msg = format!("chat: blocklist setup failed: {}", first_error(&sh));
            return stop_and_fail(&sh, h, msg);
        }
        if !ok {
            let msg = format!(
                "chat: blocklist setup: timeout, {}/{n} accounts done",
                sh.progress.load(Relaxed)
            );
            return stop_and_fail(&sh, h, msg);
        }
    }
    // Let initial presence traffic drain before loading.
    sleep_bounded(Duration::from_millis(300), deadline);
    let mode = if a.rate.is_some() { "open" } else { "closed" };
    sh.phase.store(phase::RUN, Relaxed);
    progress(&format!("chat: warmup {}s", a.warmup));
    sleep_bounded(Duration::from_secs_f64(a.warmup.max(0.0)), deadline);
    let mark = CpuMark::now(c.server_pid, c.peer_pid);
    let t0 = Instant::now();
    sh.measuring.store(true, Relaxed);
    progress(&format!("chat: measuring {}s", a.duration));
    sleep_bounded(Duration::from_secs_f64(a.duration.max(0.0)), deadline);
    sh.measuring.store(false, Relaxed);
    let window = t0.elapsed();
    let cpu = mark.since(c.server_pid, c.peer_pid);
    // Stop sending and let what is in flight arrive (at most --drain seconds): every message
    // sent must be delivered or bounced; the rest were lost.
    sh.phase.store(phase::DRAIN, Relaxed);
    let settled = || {
        sh.chat_delivered.load(Relaxed) + sh.chat_bounced.load(Relaxed)
            >= sh.chat_sent.load(Relaxed)
    };
    let drain_deadline = (Instant::now() + Duration::from_secs_f64(a.drain.max(0.0))).min(deadline);
    let t_drain = Instant::now();
    wait_until(drain_deadline, settled);
    let drain_s = t_drain.elapsed().as_secs_f64();
    let (sent, delivered, bounced) = (
        sh.chat_sent.load(Relaxed),
        sh.chat_delivered.load(Relaxed),
        sh.chat_bounced.load(Relaxed),
    );
    let lost = sent.saturating_sub(delivered + bounced);
    if lost > 0 || bounced > 0 {
        eprintln!(
            "xmppd-loadtest: chat: {sent} messages sent, {delivered} delivered, {bounced} \
             bounced, {lost} neither after {drain_s:.1} s of drain; first error: {}",
            first_error(&sh)
        );
    }
    let r = stop_and_report(c, &sh, h, "chat", mode, window, cpu)
        .param("sent", sent)
        .param("delivered", delivered)
        .param("bounced", bounced)
        .param("lost", lost)
        .param("drain_s", (drain_s * 1000.0).round() / 1000.0);
    let ops = r.ops;
    let mut r = r
        .param("pairs", pairs)
        .param("window", a.window)
        .param("body_bytes", a.body_bytes)
        .param("blocklist", a.blocklist)
        .param("threads", threads)
        .param("mech", format!("{:?}", c.mech))
        .param("starttls", c.starttls);
    if let Some(rate) = a.rate {
        r = r.param("rate", rate);
    }
    if let Some(d) = &c.peer_domain {
        r = r
            .param("domain", c.domain.clone())
            .param("peer_domain", d.clone());
    }
    r.server_rss_kib = c.server_pid.and_then(stats::server_rss_kib);
    r.peer_rss_kib = c.peer_pid.and_then(stats::server_rss_kib);
    emit(c, &r);
    Ok(if ops > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// Runs one login pass over `users`; returns (report inputs) or an error.
fn login_pass(
    c: &Common,
    threads: usize,
    users: usize,
    rate: Option<f64>,
    presence: bool,
    keep: bool,
    deadline: Instant,
) -> (
    Arc<Shared>,
    Vec<std::thread::JoinHandle<scenarios::Out>>,
    bool,
) {
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let tgt = target(c, users);
    let sh2 = sh.clone();
    let conc = c.concurrency.div_ceil(threads).max(1);
    let iv = rate
        .filter(|r| *r > 0.0)
        .map(|r| (1e9 * threads as f64 / r) as u64);
    let h = scenarios::spawn(
        threads,
        &tgt,
        epoch,
        move |t| {
            let launch = Launcher::new(deal(1..=users, t, threads), conc, iv);
            scenarios::LoginDrv::new(sh2.clone(), launch, presence, keep)
        },
        scenarios::LoginDrv::out,
    );
    let ok = wait_until(deadline, || {
        sh.established.load(Relaxed) + sh.failed.load(Relaxed) >= users as u64
    });
    (sh, h, ok)
}

fn login(c: &Common, threads: usize, a: &LoginArgs, limit: u64) -> Result<ExitCode, String> {
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let users = if a.keep {
        cap_sessions(a.users, limit, threads, sockets_per_session(c, false))
    } else {
        a.users
    };
    if a.prime {
        progress(&format!("login: priming {users} accounts (unmeasured)"));
        let (sh, h, _) = login_pass(c, threads, users, None, false, false, deadline);
        sh.phase.store(phase::STOP, Relaxed);
        scenarios::join(h);
        std::thread::sleep(Duration::from_millis(500));
    }
    progress(&format!("login: {users} accounts"));
    let mark = CpuMark::now(c.server_pid, c.peer_pid);
    let t0 = Instant::now();
    let (sh, h, ok) = login_pass(c, threads, users, a.rate, a.presence, a.keep, deadline);
    let window = t0.elapsed();
    let cpu = mark.since(c.server_pid, c.peer_pid);
    let rss = c.server_pid.and_then(stats::server_rss_kib);
    let mode = if a.rate.is_some() { "rate" } else { "storm" };
    let r = stop_and_report(c, &sh, h, "login", mode, window, cpu);
    let ops = r.ops;
    let mut r = r
        .param("users", users)
        .param("concurrency", c.concurrency)
        .param("threads", threads)
        .param("mech", format!("{:?}", c.mech))
        .param("starttls", c.starttls)
        .param("keep", a.keep)
        .param("presence", a.presence);
    if let Some(rate) = a.rate {
        r = r.param("rate", rate);
    }
    r.server_rss_kib = rss;
    emit(c, &r);
    if !ok || ops < users as u64 {
        eprintln!(
            "xmppd-loadtest: {ops}/{users} logins completed; first error: {}",
            first_error(&sh)
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn idle(c: &Common, threads: usize, a: &IdleArgs, limit: u64) -> Result<ExitCode, String> {
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let users = cap_sessions(a.users, limit, threads, sockets_per_session(c, false));
    let before = c.server_pid.and_then(stats::server_rss_kib);
    let mark = CpuMark::now(c.server_pid, c.peer_pid);
    let t0 = Instant::now();
    progress(&format!("idle: logging in {users} sessions"));
    let (sh, h, ok) = login_pass(c, threads, users, None, a.presence, true, deadline);
    let window = t0.elapsed();
    let cpu = mark.since(c.server_pid, c.peer_pid);
    if !ok || sh.established.load(Relaxed) < users as u64 {
        let msg = format!(
            "only {}/{users} sessions logged in; first error: {}",
            sh.established.load(Relaxed),
            first_error(&sh)
        );
        return stop_and_fail(&sh, h, msg);
    }
    progress(&format!("idle: settling {}s", a.settle));
    sleep_bounded(Duration::from_secs_f64(a.settle), deadline);
    let after = c.server_pid.and_then(stats::server_rss_kib);
    let ops = sh.ops.load(Relaxed);
    sleep_bounded(Duration::from_secs_f64(a.hold), deadline);
    sh.phase.store(phase::STOP, Relaxed);
    let out = scenarios::join(h);
    let mut r = Report::new(
        "idle",
        "hold",
        &c.label,
        ops,
        window,
        cpu,
        Latency::of(&out.hist),
        out.errors,
    )
    .param("users", users)
    .param("presence", a.presence)
    .param("threads", threads)
    .param("mech", format!("{:?}", c.mech))
    .param("starttls", c.starttls);
    if let (Some(b), Some(aft)) = (before, after) {
        r.rss_kib_per_session =
            Some(((aft as f64 - b as f64) / users.max(1) as f64 * 100.0).round() / 100.0);
        r = r.param("rss_before_kib", b).param("rss_after_kib", aft);
    }
    r.server_rss_kib = after;
    emit(c, &r);
    Ok(ExitCode::SUCCESS)
}

fn presence(c: &Common, threads: usize, a: &PresenceArgs, limit: u64) -> Result<ExitCode, String> {
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let users = cap_sessions(a.users, limit, threads, sockets_per_session(c, true));
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let tgt = target(c, users);
    let (sh2, conc, rounds) = (sh.clone(), c.concurrency.div_ceil(threads).max(1), a.rounds);
    let prefix = c.user_prefix.clone();
    let h = scenarios::spawn(
        threads,
        &tgt,
        epoch,
        move |t| {
            scenarios::PresenceDrv::new(
                sh2.clone(),
                Launcher::new(deal(1..=users, t, threads), conc, None),
                rounds,
                prefix.clone(),
            )
        },
        scenarios::PresenceDrv::out,
    );
    progress(&format!("presence: logging in {users} sessions"));
    if let Err(e) = wait_logged_in(&sh, users as u64, deadline) {
        return stop_and_fail(&sh, h, e);
    }
    // The initial presence storm has settled when nothing arrived for one second.
    let mut last = u64::MAX;
    let _ = wait_until(deadline, || {
        let now = sh.progress.load(Relaxed);
        let quiet = now == last;
        last = now;
        if !quiet {
            std::thread::sleep(Duration::from_millis(990));
        }
        quiet
    });
    progress(&format!(
        "presence: storm settled ({} initial presences); measuring",
        sh.progress.load(Relaxed)
    ));
    let contacts = a.contacts.min(users.saturating_sub(1)) as u64;
    let expected = users as u64 * contacts * u64::from(a.rounds);
    let (r, complete) = measure_until(c, &sh, h, deadline, expected, "presence", "broadcast");
    let ops = r.ops;
    let mut r = r
        .param("users", users)
        .param("contacts", a.contacts)
        .param("rounds", a.rounds)
        .param("expected", expected)
        .param("threads", threads);
    r.server_rss_kib = c.server_pid.and_then(stats::server_rss_kib);
    emit(c, &r);
    if !complete {
        eprintln!(
            "xmppd-loadtest: timeout: {ops}/{expected} presence deliveries (rosters provisioned?)"
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn muc(c: &Common, threads: usize, a: &MucArgs, limit: u64) -> Result<ExitCode, String> {
    if let Some(rate) = a.rate {
        if !(rate.is_finite() && rate > 0.0) {
            eprintln!("muc: --rate must be a positive number of room messages per second");
            return Ok(ExitCode::from(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let service = a
        .muc_service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", c.domain));
    let users = cap_sessions(
        a.rooms * a.occupants,
        limit,
        threads,
        sockets_per_session(c, true),
    );
    let occupants = a.occupants.max(1);
    let rooms = users / occupants;
    let users = rooms * occupants;
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let tgt = target(c, users);
    let cfg = scenarios::MucCfg {
        occupants,
        rounds: a.rounds,
        window: a.window.max(1),
        room_window: a.room_window,
        rate: a.rate,
        users,
        service: service.clone(),
    };
    let (sh2, conc) = (sh.clone(), c.concurrency.div_ceil(threads).max(1));
    let h = scenarios::spawn(
        threads,
        &tgt,
        epoch,
        move |t| {
            scenarios::MucDrv::new(
                sh2.clone(),
                cfg.clone(),
                Launcher::new(deal(1..=users, t, threads), conc, None),
            )
        },
        scenarios::MucDrv::out,
    );
    progress(&format!("muc: logging in {users} sessions"));
    if let Err(e) = wait_logged_in(&sh, users as u64, deadline) {
        return stop_and_fail(&sh, h, e);
    }
    let muc_err = || sh.muc_error.lock().ok().and_then(|e| e.clone());
    sh.phase.store(phase::JOIN_FIRST, Relaxed);
    let ok = wait_until(deadline, || {
        sh.progress.load(Relaxed) >= rooms as u64 || muc_err().is_some()
    });
    if let Some(e) = muc_err() {
        sh.phase.store(phase::STOP, Relaxed);
        scenarios::join(h);
        println!("muc: not supported by this server ({e})");
        return Ok(ExitCode::from(EXIT_UNSUPPORTED));
    }
    if !ok {
        return stop_and_fail(&sh, h, "muc: timeout waiting for room creation".into());
    }
    sleep_bounded(Duration::from_millis(200), deadline);
    sh.phase.store(phase::JOIN_REST, Relaxed);
    let ok = wait_until(deadline, || {
        sh.progress.load(Relaxed) >= users as u64 || muc_err().is_some()
    });
    if !ok || muc_err().is_some() {
        return stop_and_fail(&sh, h, format!("muc: joins incomplete ({:?})", muc_err()));
    }
    // Let the join presence storm (occupants² presences) drain before loading.
    sleep_bounded(Duration::from_millis(500), deadline);
    let per_room_msg = occupants as u64;
    let (r, complete, expected) = if let Some(rate) = a.rate {
        progress(&format!(
            "muc: {rate} room messages/s = {} deliveries/s",
            rate * per_room_msg as f64
        ));
        let r = measure_for(c, &sh, h, a.warmup, a.duration, deadline, "muc", "open");
        let expected = (rate * per_room_msg as f64 * r.duration_s).round() as u64;
        // Open loop: a server that falls behind delivers fewer than the timetable asked for.
        let complete = r.ops > 0;
        if r.ops < expected * 9 / 10 {
            eprintln!(
                "xmppd-loadtest: muc: {}/{expected} deliveries in the window: the server did \
                 not keep up with --rate {rate}",
                r.ops
            );
        }
        (r.param("rate", rate), complete, expected)
    } else if a.rounds == 0 {
        let r = measure_for(c, &sh, h, a.warmup, a.duration, deadline, "muc", "closed");
        let complete = r.ops > 0;
        (r, complete, 0)
    } else {
        let expected = (rooms * occupants) as u64 * per_room_msg * u64::from(a.rounds);
        let (r, complete) = measure_until(c, &sh, h, deadline, expected, "muc", "closed");
        (r, complete, expected)
    };
    let ops = r.ops;
    let mut r = r
        .param("rooms", rooms)
        .param("occupants", occupants)
        .param("rounds", a.rounds)
        .param("window", a.window)
        .param("room_window", a.room_window)
        .param("expected", expected)
        .param("threads", threads)
        .param("service", service);
    r.server_rss_kib = c.server_pid.and_then(stats::server_rss_kib);
    emit(c, &r);
    if !complete {
        eprintln!(
            "xmppd-loadtest: muc: {ops}/{expected} groupchat deliveries; first error: {}",
            first_error(&sh)
        );
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn pep(c: &Common, threads: usize, a: &PepArgs, limit: u64) -> Result<ExitCode, String> {
    if let Some(rate) = a.rate {
        if !(rate.is_finite() && rate > 0.0) {
            eprintln!("pep: --rate must be a positive number of publishes per second");
            return Ok(ExitCode::from(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let users = cap_sessions(a.users, limit, threads, sockets_per_session(c, true));
    let contacts = a.contacts.min(users.saturating_sub(1)) as u64;
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let tgt = target(c, users);
    let cfg = scenarios::PepCfg {
        users,
        contacts: a.contacts,
        rounds: a.rounds,
        window: a.window.max(1),
        rate: a.rate,
        prefix: c.user_prefix.clone(),
    };
    let (sh2, conc, cold) = (
        sh.clone(),
        c.concurrency.div_ceil(threads).max(1),
        a.cold_caps,
    );
    let h = scenarios::spawn(
        threads,
        &tgt,
        epoch,
        move |t| {
            // Warm caps: user 1 first (thread 0), the others from phase JOIN_REST on.
            let (first, rest) = match (cold, t) {
                (true, _) => (deal(1..=users, t, threads), Vec::new()),
                (false, 0) => (vec![1], deal(2..=users, t, threads)),
                (false, _) => (Vec::new(), deal(2..=users, t, threads)),
            };
            scenarios::PepDrv::new(
                sh2.clone(),
                cfg.clone(),
                Launcher::new(first, conc, None),
                Launcher::new(rest, conc, None),
            )
        },
        scenarios::PepDrv::out,
    );
    if !a.cold_caps && users > 1 {
        progress("pep: logging in user 1 (the server meets the clients' caps)");
        if let Err(e) = wait_logged_in(&sh, 1, deadline) {
            return stop_and_fail(&sh, h, e);
        }
        let asked = (Instant::now() + Duration::from_secs(2)).min(deadline);
        let _ = wait_until(asked, || sh.caps_queries.load(Relaxed) > 0);
        sleep_bounded(Duration::from_millis(200), deadline);
    }
    sh.phase.store(phase::JOIN_REST, Relaxed);
    progress(&format!("pep: logging in {users} sessions"));
    if let Err(e) = wait_logged_in(&sh, users as u64, deadline) {
        return stop_and_fail(&sh, h, e);
    }
    // Presence and the servers' caps queries have settled when nothing arrived for --settle s.
    let quiet = Duration::from_secs_f64(a.settle.max(0.0));
    let mut last = (u64::MAX, Instant::now());
    let _ = wait_until(deadline, || {
        let now = sh.progress.load(Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= quiet
    });
    progress(&format!(
        "pep: settled ({} presences and caps queries, {} caps queries answered); publishing",
        sh.progress.load(Relaxed),
        sh.caps_queries.load(Relaxed)
    ));
    let unsupported = || sh.unsupported.lock().ok().and_then(|e| e.clone());
    // Every user's first item, one user at a time (per thread): it creates the node.
    sh.phase.store(phase::CREATE, Relaxed);
    let created = wait_until(deadline, || {
        sh.created.load(Relaxed) >= users as u64 || unsupported().is_some()
    });
    if !created {
        let msg = format!(
            "pep: timeout creating the nodes: {}/{users} first publishes answered",
            sh.created.load(Relaxed)
        );
        return stop_and_fail(&sh, h, msg);
    }
    if unsupported().is_none() {
        // Their notifications drain (at most 10 s: a server may not send them all).
        let want = users as u64 * contacts;
        let drained = (Instant::now() + Duration::from_secs(10)).min(deadline);
        let _ = wait_until(drained, || sh.created_notified.load(Relaxed) >= want);
        progress(&format!(
            "pep: {users} nodes created (first items published one user at a time; {}/{want} \
             of their notifications arrived)",
            sh.created_notified.load(Relaxed)
        ));
        sleep_bounded(Duration::from_millis(100), deadline);
    }
    // Exit 3 when the server refuses the publishes or sends no notification at all.
    let not_supported = |h| -> Result<ExitCode, String> {
        sh.phase.store(phase::STOP, Relaxed);
        scenarios::join(h);
        let why = unsupported().unwrap_or_else(|| {
            format!(
                "no PEP notification arrived at a contact within {} s of publishing: {} \
                 publishes answered with a result, {} own notifications, {} caps queries \
                 answered",
                a.warmup,
                sh.published.load(Relaxed),
                sh.own_notified.load(Relaxed),
                sh.caps_queries.load(Relaxed)
            )
        });
        println!("pep: not supported by this server ({why})");
        Ok(ExitCode::from(EXIT_UNSUPPORTED))
    };
    let per_publish = contacts;
    if unsupported().is_some() {
        return not_supported(h);
    }
    // Whether a contact got a notification of the load phase's publishes yet.
    let before = sh.notified.load(Relaxed);
    let silent = || sh.notified.load(Relaxed) == before;
    let (r, complete, expected, mode) = if a.rate.is_some() || a.rounds == 0 {
        let mode = if a.rate.is_some() { "open" } else { "closed" };
        sh.phase.store(phase::RUN, Relaxed);
        progress(&format!("pep: warmup {}s", a.warmup));
        let t0 = Instant::now();
        let warm_end = (t0 + Duration::from_secs_f64(a.warmup.max(0.0))).min(deadline);
        let _ = wait_until(warm_end, || unsupported().is_some());
        // A short warm-up: give the first notification a second in all before giving up.
        let grace_end = (t0 + Duration::from_secs(1)).min(deadline);
        let _ = wait_until(grace_end, || unsupported().is_some() || !silent());
        if unsupported().is_some() || silent() {
            return not_supported(h);
        }
        let r = measure_window(c, &sh, h, a.duration, deadline, "pep", mode);
        match a.rate {
            Some(rate) => {
                let expected = (rate * per_publish as f64 * r.duration_s).round() as u64;
                if r.ops < expected * 9 / 10 {
                    eprintln!(
                        "xmppd-loadtest: pep: {}/{expected} notifications in the window: the \
                         server did not keep up with --rate {rate}",
                        r.ops
                    );
                }
                let complete = r.ops > 0;
                (r.param("rate", rate), complete, expected, mode)
            }
            None => {
                let complete = r.ops > 0;
                (r, complete, 0, mode)
            }
        }
    } else {
        let expected = users as u64 * per_publish * u64::from(a.rounds);
        let mark = CpuMark::now(c.server_pid, c.peer_pid);
        let t0 = Instant::now();
        sh.measuring.store(true, Relaxed);
        sh.phase.store(phase::RUN, Relaxed);
        let grace = Duration::from_secs_f64(a.warmup.max(1.0));
        let complete = wait_until(deadline, || {
            sh.ops.load(Relaxed) >= expected
                || unsupported().is_some()
                || (silent() && t0.elapsed() >= grace)
        });
        let window = t0.elapsed();
        let cpu = mark.since(c.server_pid, c.peer_pid);
        sh.measuring.store(false, Relaxed);
        if unsupported().is_some() || silent() {
            return not_supported(h);
        }
        let complete = complete && sh.ops.load(Relaxed) >= expected;
        let r = stop_and_report(c, &sh, h, "pep", "closed", window, cpu);
        (r, complete, expected, "closed")
    };
    let ops = r.ops;
    let publishes = sh.published_measured.load(Relaxed);
    // Contacts that never got a notification from an owner: the server's caps filter left
    // them out (or the rosters do not match --users/--contacts).
    let missing: Vec<(usize, usize)> = sh
        .pep_pairs
        .lock()
        .map(|seen| {
            (1..=users)
                .flat_map(|o| provision::contacts(o, users, a.contacts).map(move |c| (o, c)))
                .filter(|p| !seen.contains(p))
                .collect()
        })
        .unwrap_or_default();
    let dups = sh.duplicates.load(Relaxed);
    if dups > 0 {
        eprintln!(
            "xmppd-loadtest: pep: {dups} notifications came to a contact twice (the same item; \
             not counted)"
        );
    }
    if !missing.is_empty() {
        let eg: Vec<String> = missing
            .iter()
            .take(8)
            .map(|(o, k)| format!("{0}{o}->{0}{k}", c.user_prefix))
            .collect();
        eprintln!(
            "xmppd-loadtest: pep: {} of {} (owner->contact) pairs never got a notification \
             (e.g. {})",
            missing.len(),
            users as u64 * contacts,
            eg.join(" ")
        );
    }
    let per = if publishes > 0 {
        (ops as f64 / publishes as f64 * 100.0).round() / 100.0
    } else {
        0.0
    };
    let mut r = r
        .param("users", users)
        .param("contacts", a.contacts)
        .param("rounds", a.rounds)
        .param("window", a.window)
        .param("expected", expected)
        .param("publishes", publishes)
        .param("notifications_per_publish", per)
        .param("own_notifications", sh.own_notified.load(Relaxed))
        .param("silent_pairs", missing.len())
        .param("duplicates", sh.duplicates.load(Relaxed))
        .param("cold_caps", a.cold_caps)
        .param("caps_queries", sh.caps_queries.load(Relaxed))
        .param("threads", threads);
    r.server_rss_kib = c.server_pid.and_then(stats::server_rss_kib);
    emit(c, &r);
    if !complete {
        eprintln!(
            "xmppd-loadtest: pep ({mode}): {ops}/{expected} notifications; first error: {}",
            first_error(&sh)
        );
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn provision(c: &Common, a: &ProvisionArgs) -> ExitCode {
    if a.out_xep0227.is_none() && a.out_list.is_none() {
        eprintln!("provision: give --out-xep0227 FILE and/or --out-list FILE");
        return ExitCode::from(2);
    }
    let write = |path: &std::path::Path, xep: bool| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        if xep {
            provision::write_xep0227(
                &mut w,
                &c.domain,
                &c.user_prefix,
                &c.password,
                a.users,
                a.contacts,
            )?;
        } else {
            provision::write_list(
                &mut w,
                &c.domain,
                &c.user_prefix,
                &c.password,
                a.users,
                a.contacts,
            )?;
        }
        w.flush()
    };
    for (path, xep) in [(&a.out_xep0227, true), (&a.out_list, false)] {
        if let Some(p) = path {
            if let Err(e) = write(p, xep) {
                eprintln!("provision: {}: {e}", p.display());
                return ExitCode::from(EXIT_FAILED);
            }
            println!(
                "provision: wrote {} ({} users, {} contacts each)",
                p.display(),
                a.users,
                a.contacts
            );
        }
    }
    if a.contacts % 2 == 1 {
        eprintln!("provision: note: odd --contacts gives an asymmetric ring; use an even number");
    }
    ExitCode::SUCCESS
}
