//! Measurements: server and generator CPU, server RSS, latency histograms and the report
//! (a table on stdout and, with `--json`, one JSON line per run).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microsecond latency histogram, 1 µs .. 1 hour, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Records a latency in nanoseconds (clamped into the histogram's range).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).max(1));
}

#[cfg(test)]
/// Latency from the *intended* send time (open loop: coordinated-omission corrected) or from
/// the actual send time (closed loop); whichever the caller stamped into the stanza.
pub fn latency_ns(stamped_ns: u64, received_ns: u64) -> u64 {
    received_ns.saturating_sub(stamped_ns)
}

/// Percentiles of a latency histogram, in µs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Number of samples.
    pub count: u64,
}

impl Latency {
    /// Percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// A reading of the server's CPU time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCpu {
    /// utime + stime from `/proc/PID/stat` in µs: counts threads that have exited, but only
    /// in clock ticks (10 ms at the usual 100 Hz).
    stat_us: u64,
    /// Sum of the run time of every live thread from `/proc/PID/task/*/schedstat`, in ns,
    /// with the thread ids it covers; None where the kernel has no schedstat.
    sched: Option<(u64, Vec<u32>)>,
}

impl ServerCpu {
    /// µs of CPU used between `self` and `later`: nanosecond-exact when the same threads
    /// were alive at both readings, otherwise the tick-resolution total (a thread that exited
    /// in between would be missing from the per-thread sum).
    pub fn delta_us(&self, later: &ServerCpu) -> u64 {
        match (&self.sched, &later.sched) {
            (Some((a, ta)), Some((b, tb))) if ta == tb => b.saturating_sub(*a) / 1000,
            _ => later.stat_us.saturating_sub(self.stat_us),
        }
    }
}

/// The server process's CPU time now (None if the pid is gone).
pub fn server_cpu(pid: u32) -> Option<ServerCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let stat_us = parse_stat_cpu_ticks(&stat)? * 1_000_000 / clock_ticks();
    Some(ServerCpu {
        stat_us,
        sched: thread_run_ns(pid),
    })
}

/// Total run time (ns) of the live threads of `pid`, and their ids in ascending order.
fn thread_run_ns(pid: u32) -> Option<(u64, Vec<u32>)> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    let mut total = 0u64;
    for tid in &tids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        total += s.split_ascii_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some((total, tids))
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')' the first field is #3 (state); utime is #14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// VmRSS of the server process in KiB.
pub fn server_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU time (µs) of this process, all threads (getrusage RUSAGE_SELF).
pub fn self_cpu_us() -> u64 {
    // SAFETY: rusage is plain data, zero is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The machine's CPU time from the `cpu` line of `/proc/stat`, in clock ticks: (stolen by
/// the hypervisor, total of the first eight fields).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// `cpu  user nice system idle iowait irq softirq steal ...` → (steal, sum of those eight).
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 8).then(|| (v[7], v.iter().sum()))
}

/// CPU readings at the start of the measured window.
#[derive(Debug, Clone)]
pub struct CpuMark {
    server: Option<ServerCpu>,
    peer: Option<ServerCpu>,
    gen_us: u64,
    machine: Option<(u64, u64)>,
}

/// CPU used over a measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// The server's, in µs (None without `--server-pid`).
    pub server_us: Option<u64>,
    /// The federated peer server's, in µs (None without `--peer-pid`).
    pub peer_us: Option<u64>,
    /// The generator's, in µs.
    pub gen_us: u64,
    /// Share of the machine's CPU time the hypervisor gave to others (steal), in percent:
    /// on a virtual machine, the run shared its CPUs with someone else's work, and its CPU
    /// figures are not comparable with a run that did not (None where `/proc/stat` has no
    /// steal field).
    pub steal_pct: Option<f64>,
}

impl CpuMark {
    /// Reads both sides and the machine now.
    pub fn now(server_pid: Option<u32>, peer_pid: Option<u32>) -> Self {
        Self {
            server: server_pid.and_then(server_cpu),
            peer: peer_pid.and_then(server_cpu),
            gen_us: self_cpu_us(),
            machine: machine_ticks(),
        }
    }

    /// CPU used since `self`.
    pub fn since(&self, server_pid: Option<u32>, peer_pid: Option<u32>) -> CpuUse {
        let now = Self::now(server_pid, peer_pid);
        let server_us = match (&self.server, &now.server) {
            (Some(a), Some(b)) => Some(a.delta_us(b)),
            _ => None,
        };
        let peer_us = match (&self.peer, &now.peer) {
            (Some(a), Some(b)) => Some(a.delta_us(b)),
            _ => None,
        };
        let steal_pct = match (self.machine, now.machine) {
            (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
                Some(s1.saturating_sub(s0) as f64 * 100.0 / (t1 - t0) as f64)
            }
            _ => None,
        };
        CpuUse {
            server_us,
            peer_us,
            gen_us: now.gen_us.saturating_sub(self.gen_us),
            steal_pct,
        }
    }
}

/// µs of CPU per operation (None when there were no operations or no reading).
pub fn us_per_op(cpu_us: Option<u64>, ops: u64) -> Option<f64> {
    match cpu_us {
        Some(us) if ops > 0 => Some(us as f64 / ops as f64),
        _ => None,
    }
}

/// One run's results. Serialized as the `--json` line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (`chat`, `login`, …).
    pub scenario: String,
    /// `closed`, `open`, `storm`, `rate`, …
    pub mode: String,
    /// The `--label` of the server under test.
    pub server: String,
    /// Operations completed in the measured window (see `--help`).
    pub ops: u64,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// ops / duration_s.
    pub throughput_per_s: f64,
    /// Server CPU µs per op (needs `--server-pid`); with `--peer-pid` (federation) the sum
    /// of both servers'.
    pub server_cpu_us_per_op: Option<f64>,
    /// Federation: the first server's (`--server-pid`, the senders' side) CPU µs per op.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_cpu_us_per_op: Option<f64>,
    /// Federation: the peer server's (`--peer-pid`, the receivers' side) CPU µs per op.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cpu_us_per_op: Option<f64>,
    /// Generator CPU µs per op.
    pub gen_cpu_us_per_op: Option<f64>,
    /// Server CPU utilisation over the window, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU utilisation over the window, percent of one core.
    pub gen_cpu_pct: f64,
    /// CPU time the hypervisor stole over the window, percent of the machine's (see
    /// [`CpuUse::steal_pct`]).
    pub steal_pct: Option<f64>,
    /// Latency percentiles in µs.
    pub latency_us: Latency,
    /// Server RSS growth per idle session in KiB (idle scenario).
    pub rss_kib_per_session: Option<f64>,
    /// Server VmRSS at the end, KiB.
    pub server_rss_kib: Option<u64>,
    /// Federation: the peer server's VmRSS at the end, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_rss_kib: Option<u64>,
    /// Errors (failed logins, stream errors, lost connections, …).
    pub errors: u64,
    /// Scenario parameters (flattened into the top-level object).
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// Fills the derived fields from the raw window measurements.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        mode: &str,
        server: &str,
        ops: u64,
        window: Duration,
        cpu: CpuUse,
        latency: Latency,
        errors: u64,
    ) -> Self {
        let secs = window.as_secs_f64().max(1e-9);
        // Federation: both servers' CPU (each side is reported on its own as well).
        let both = match (cpu.server_us, cpu.peer_us) {
            (Some(a), Some(b)) => Some(a + b),
            (a, _) => a,
        };
        Self {
            scenario: scenario.into(),
            mode: mode.into(),
            server: server.into(),
            ops,
            duration_s: round3(window.as_secs_f64()),
            throughput_per_s: round3(ops as f64 / secs),
            server_cpu_us_per_op: us_per_op(both, ops).map(round3),
            sender_cpu_us_per_op: cpu.peer_us.and(us_per_op(cpu.server_us, ops)).map(round3),
            peer_cpu_us_per_op: us_per_op(cpu.peer_us, ops).map(round3),
            gen_cpu_us_per_op: us_per_op(Some(cpu.gen_us), ops).map(round3),
            server_cpu_pct: both.map(|us| round3(us as f64 / 1e6 / secs * 100.0)),
            gen_cpu_pct: round3(cpu.gen_us as f64 / 1e6 / secs * 100.0),
            steal_pct: cpu.steal_pct.map(round3),
            latency_us: latency,
            rss_kib_per_session: None,
            server_rss_kib: None,
            peer_rss_kib: None,
            errors,
            params: serde_json::Map::new(),
        }
    }

    /// Adds a scenario parameter.
    pub fn param(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The single-line JSON form.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.3}{unit}"),
            None => "n/a (no --server-pid)".into(),
        };
        let l = &self.latency_us;
        let mut s = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(
            "== {} ({}) against {} [{}]\n",
            self.scenario,
            self.mode,
            self.server,
            params.join(" ")
        ));
        s.push_str(&format!("  ops                 {:>14}\n", self.ops));
        s.push_str(&format!(
            "  duration            {:>13.3}s\n",
            self.duration_s
        ));
        s.push_str(&format!(
            "  throughput          {:>12.1}/s\n",
            self.throughput_per_s
        ));
        s.push_str(&format!(
            "  server cpu/op       {:>14}\n",
            opt(self.server_cpu_us_per_op, " us")
        ));
        if let (Some(a), Some(b)) = (self.sender_cpu_us_per_op, self.peer_cpu_us_per_op) {
            s.push_str(&format!(
                "    sender side       {:>14}\n    receiver side     {:>14}\n",
                opt(Some(a), " us"),
                opt(Some(b), " us")
            ));
        }
        s.push_str(&format!(
            "  generator cpu/op    {:>14}\n",
            opt(self.gen_cpu_us_per_op, " us")
        ));
        s.push_str(&format!(
            "  server cpu          {:>14}\n",
            opt(self.server_cpu_pct, " %")
        ));
        s.push_str(&format!(
            "  generator cpu       {:>12.1} %\n",
            self.gen_cpu_pct
        ));
        s.push_str(&format!(
            "  hypervisor steal    {:>14}\n",
            opt(self.steal_pct, " %")
        ));
        s.push_str(&format!(
            "  latency us          p50 {} p90 {} p99 {} p99.9 {} max {} (n={})\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.count
        ));
        if let Some(r) = self.rss_kib_per_session {
            s.push_str(&format!("  rss/session         {r:>10.2} KiB\n"));
        }
        if let Some(r) = self.server_rss_kib {
            s.push_str(&format!("  server rss          {r:>10} KiB\n"));
        }
        if let Some(r) = self.peer_rss_kib {
            s.push_str(&format!("  peer server rss     {r:>10} KiB\n"));
        }
        s.push_str(&format!("  errors              {:>14}\n", self.errors));
        if let (Some(sv), Some(g)) = (self.server_cpu_us_per_op, self.gen_cpu_us_per_op) {
            if g >= sv && self.gen_cpu_pct >= 70.0 {
                s.push_str("  WARNING: generator CPU/op >= server CPU/op: the generator may be the bottleneck\n");
            }
        }
        if self.steal_pct.is_some_and(|p| p >= 2.0) {
            s.push_str("  WARNING: the hypervisor took CPU time from this machine during the window: its CPU figures are not comparable\n");
        }
        s
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_data() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1000);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 10_000);
        let near = |a: u64, b: u64| (a as f64 - b as f64).abs() <= b as f64 * 0.002;
        assert!(near(l.p50, 5000), "{l:?}");
        assert!(near(l.p90, 9000), "{l:?}");
        assert!(near(l.p99, 9900), "{l:?}");
        assert!(near(l.p999, 9990), "{l:?}");
        assert!(near(l.max, 10_000), "{l:?}");
    }

    /// A 1 kHz open-loop schedule where the server stalls for 100 ms once: measured from the
    /// actual send time only one message looks slow; from the intended time the backlog shows.
    #[test]
    fn coordinated_omission_correction_exposes_stall() {
        let mut naive = new_histogram();
        let mut corrected = new_histogram();
        let service_ns = 100_000; // 100 µs normal service time
        let mut server_free_at = 0u64;
        for k in 0..10_000u64 {
            let intended = k * 1_000_000;
            // Closed-loop-ish sender: cannot send before the previous reply came back.
            let actual_send = intended.max(server_free_at);
            let stall = if k == 5000 { 100_000_000 } else { 0 };
            let done = actual_send + service_ns + stall;
            server_free_at = done;
            record_ns(&mut naive, latency_ns(actual_send, done));
            record_ns(&mut corrected, latency_ns(intended, done));
        }
        let n = Latency::of(&naive);
        let c = Latency::of(&corrected);
        assert!(n.p99 < 200, "naive p99 {n:?}");
        // ~100 messages were delayed by 1..100 ms: the corrected p99 sees it.
        assert!(c.p99 > 1000, "corrected p99 {c:?}");
        assert!(c.max >= 100_000);
    }

    #[test]
    fn us_per_op_and_report_fields() {
        assert_eq!(us_per_op(Some(3_000_000), 1_000_000), Some(3.0));
        assert_eq!(us_per_op(Some(5), 0), None);
        assert_eq!(us_per_op(None, 10), None);
        let r = Report::new(
            "chat",
            "closed",
            "xmppd",
            1000,
            Duration::from_secs(2),
            CpuUse {
                server_us: Some(1_000_000),
                peer_us: None,
                gen_us: 250_000,
                steal_pct: Some(1.5),
            },
            Latency::default(),
            0,
        );
        assert_eq!(r.throughput_per_s, 500.0);
        assert_eq!(r.server_cpu_us_per_op, Some(1000.0));
        assert_eq!(r.gen_cpu_us_per_op, Some(250.0));
        assert_eq!(r.server_cpu_pct, Some(50.0));
        assert_eq!(r.steal_pct, Some(1.5));
        assert_eq!(r.sender_cpu_us_per_op, None);
        assert!(!r.json_line().contains("peer_cpu_us_per_op"));
        // Federation: the headline is the sum of both servers, each side reported too.
        let f = Report::new(
            "chat",
            "closed",
            "xmppd",
            1000,
            Duration::from_secs(2),
            CpuUse {
                server_us: Some(1_000_000),
                peer_us: Some(500_000),
                gen_us: 250_000,
                steal_pct: None,
            },
            Latency::default(),
            0,
        );
        assert_eq!(f.server_cpu_us_per_op, Some(1500.0));
        assert_eq!(f.sender_cpu_us_per_op, Some(1000.0));
        assert_eq!(f.peer_cpu_us_per_op, Some(500.0));
        assert_eq!(f.server_cpu_pct, Some(75.0));
        assert!(f.table().contains("receiver side"));
    }

    #[test]
    fn json_line_is_one_parseable_line() {
        let mut h = new_histogram();
        record_ns(&mut h, 1_500_000);
        let r = Report::new(
            "chat",
            "open",
            "srv \"x\"\nnewline",
            10,
            Duration::from_millis(1500),
            CpuUse {
                gen_us: 10,
                ..CpuUse::default()
            },
            Latency::of(&h),
            1,
        )
        .param("pairs", 50)
        .param("rate", 1000.0);
        let line = r.json_line();
        assert!(line.starts_with('{'));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "scenario",
            "mode",
            "server",
            "ops",
            "duration_s",
            "throughput_per_s",
            "server_cpu_us_per_op",
            "gen_cpu_us_per_op",
            "server_cpu_pct",
            "latency_us",
            "rss_kib_per_session",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["latency_us"]["p99"].as_u64(), Some(1500));
        assert_eq!(v["pairs"].as_u64(), Some(50));
        assert!(!r.table().is_empty());
    }

    #[test]
    fn parses_the_machine_cpu_line_with_steal() {
        let line = "cpu  4705 150 1120 16250 520 0 30 75 0 0";
        assert_eq!(parse_cpu_line(line), Some((75, 22850)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 3 4 5 6 7"), None); // no steal field
        assert_eq!(parse_cpu_line("cpu 1 2 x 4 5 6 7 8"), None);
        let (steal, total) = machine_ticks().expect("/proc/stat");
        assert!(steal <= total);
    }

    #[test]
    fn parses_proc_stat() {
        let line = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(300));
        assert!(self_cpu_us() < u64::MAX);
    }

    #[test]
    fn server_cpu_of_own_process_is_exact_and_monotonic() {
        let pid = std::process::id();
        let a = server_cpu(pid).expect("own /proc entry");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = server_cpu(pid).unwrap();
        // Spinning took CPU time; the reading must never go backwards.
        assert!(b.stat_us >= a.stat_us);
        let mut same_threads = b.clone();
        same_threads.sched = a.sched.clone().map(|(ns, t)| (ns + 5_000_000, t));
        if a.sched.is_some() {
            assert_eq!(a.delta_us(&same_threads), 5_000);
        }
        let mut other_threads = same_threads.clone();
        if let Some((_, t)) = other_threads.sched.as_mut() {
            t.push(u32::MAX);
        }
        assert_eq!(a.delta_us(&other_threads), b.stat_us - a.stat_us);
    }
}
