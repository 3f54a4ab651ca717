//! 100 `coffer_backup_policy` × 3 rules against moto: wall time of `terraform
//! apply` and of a no-op `plan`, and the provider's share of it.
//!
//! One moto, warmed up with a one-policy apply (moto loads each service on
//! first use), then reset before each of three passes:
//! - clean: no logging, the provider talks to moto directly. Gives the wall
//!   times, peak RSS, and the CPU each process used (on 2 cores, with moto a
//!   single Python process, CPU is what the wall seconds are made of).
//! - instrumented: `TF_LOG_PROVIDER=DEBUG` with a `TF_LOG_PATH` file per
//!   command, and the provider's `endpoint_url` pointing at a timing proxy in
//!   this process that relays to moto and records every AWS call. The
//!   provider's `handled rpc=… type_name=… micros=…` lines (one per RPC
//!   handler, see `Timed` in provider/src/server/provider_service.rs) give
//!   the time inside our handlers; the proxy gives the part of it that is
//!   waiting on AWS (moto), per operation. (The SDK's own debug logs are of
//!   no use here: provider/src/logging.rs caps them at info whenever a
//!   `TF_LOG*` level is set.)
//! - attribution: the instrumented pass again with `-parallelism=1`, so each
//!   AWS call lies inside exactly one handler: the calls each RPC makes.
//!
//! Handlers run concurrently (Terraform's parallelism is 10), so the sum of
//! handler time can exceed the wall time; "busy" is the union of the
//! handlers' intervals, the wall time during which at least one RPC was
//! inside the provider.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Moto, Workdir, provider_binary, terraform_versions};
use crate::{RssSampler, SamplerResult};

const POLICIES: usize = 100;
const SCHEDULER_ROLE: &str = "arn:aws:iam::123456789012:role/coffer-scheduler";

fn coffer_config(endpoint: &str, policies: usize) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    coffer = {{
      source = "coffer/coffer"
    }}
  }}
}}

provider "coffer" {{
  region             = "us-east-1"
  endpoint_url       = "{endpoint}"
  s3_use_path_style  = true
  scheduler_role_arn = "{SCHEDULER_ROLE}"
}}

resource "coffer_worker_configuration" "use1" {{
  name = "use1"
}}

resource "coffer_backup_policy" "p" {{
  count = {policies}
  name  = "bench-${{count.index}}"
  type  = "ec2"

  source {{
    regions = ["us-east-1"]
    tags    = {{ Backup = "daily" }}
  }}
{rules}
  worker_configuration_ids = [coffer_worker_configuration.use1.id]
}}
"#,
        rules = [("daily", "0 2 * * *"), ("weekly", "0 3 * * 0"), ("monthly", "0 4 1 * *")]
            .iter()
            .map(|(name, cron)| {
                format!(
                    "\n  rule {{\n    name = \"{name}\"\n    cron = \"{cron}\"\n    snapshot {{\n      retain {{\n        count = 7\n      }}\n    }}\n  }}\n"
                )
            })
            .collect::<String>(),
    )
}

/// The same graph (one resource everything depends on, 100 counted ones with
/// a value of the same shape) with the built-in `terraform_data`.
fn peer_config() -> String {
    format!(
        r#"resource "terraform_data" "use1" {{
  input = "use1"
}}

resource "terraform_data" "p" {{
  count = {POLICIES}
  input = {{
    name   = "bench-${{count.index}}"
    type   = "ec2"
    source = {{ regions = ["us-east-1"], tags = {{ Backup = "daily" }} }}
    rule = [
      {{ name = "daily", cron = "0 2 * * *", snapshot = {{ retain = {{ count = 7 }} }} }},
      {{ name = "weekly", cron = "0 3 * * 0", snapshot = {{ retain = {{ count = 7 }} }} }},
      {{ name = "monthly", cron = "0 4 1 * *", snapshot = {{ retain = {{ count = 7 }} }} }},
    ]
    worker_configuration_ids = [terraform_data.use1.id]
  }}
}}
"#
    )
}

pub fn run() {
    let tf = terraform_versions().pop().unwrap();
    let moto = Moto::start();
    let what = format!("{POLICIES} coffer_backup_policy × 3 rules");
    println!("terraform {} against moto, {what} (+ 1 coffer_worker_configuration):", tf.version);

    // moto imports each service's code and builds each region's backend on
    // first use (seconds of CPU here): keep that out of the figures.
    {
        let warm_up = Workdir::new(&tf, &provider_binary());
        warm_up.write("main.tf", &coffer_config(&moto.endpoint, 1));
        warm_up.init();
        warm_up.apply();
        moto.reset();
    }

    // ---- clean run
    let coffer = Workdir::new(&tf, &provider_binary());
    coffer.write("main.tf", &coffer_config(&moto.endpoint, POLICIES));
    coffer.init();
    let apply = measure(&moto, || coffer.apply());
    apply.print(&format!("apply, {what}"));
    let plan = measure(&moto, || no_op_plan(&coffer));
    plan.print(&format!("no-op plan, {what}"));
    drop(coffer);

    let mut peer_plan = None;
    if tf.at_least(1, 4) {
        let peer = Workdir::new(&tf, &provider_binary());
        peer.write("main.tf", &peer_config());
        peer.init();
        crate::timed(&format!("peer: apply, 1 + {POLICIES} terraform_data"), || peer.apply());
        peer_plan =
            Some(crate::timed(&format!("peer: no-op plan, 1 + {POLICIES} terraform_data"), || no_op_plan(&peer)));
    }
    if let Some(peer_plan) = peer_plan {
        println!(
            "  no-op plan: coffer costs {:+.2} s over the built-in peer",
            plan.wall.as_secs_f64() - peer_plan.as_secs_f64()
        );
    }

    // ---- instrumented run
    moto.reset();
    let moto_pid = moto_pid(moto.port());
    let proxy = TimingProxy::start(moto.port());
    let mut coffer = Workdir::new(&tf, &provider_binary());
    coffer.write("main.tf", &coffer_config(&proxy.endpoint, POLICIES));
    coffer.init();
    proxy.take();
    let logs = tempfile::Builder::new().prefix("coffer-bench-logs-").tempdir().unwrap();
    println!("instrumented (TF_LOG_PROVIDER=DEBUG, AWS calls through a timing proxy):");
    for (phase, run) in [("apply", true), ("no-op plan", false)] {
        let log = logs.path().join(format!("{}.log", phase.replace(' ', "-")));
        coffer.set_env("TF_LOG_PROVIDER", "DEBUG");
        coffer.set_env("TF_LOG_PATH", log.to_str().unwrap());
        let cpu_before = (moto_pid.and_then(process_cpu), own_cpu());
        let start = Instant::now();
        if run {
            coffer.apply();
        } else {
            no_op_plan(&coffer);
        }
        let wall = start.elapsed();
        report(phase, wall, &parse_handled(&log), &proxy.take());
        println!(
            "    CPU: moto {}, this process (the proxy) {:.2} s",
            moto_pid
                .and_then(process_cpu)
                .zip(cpu_before.0)
                .map(|(after, before)| format!("{:.2} s", (after.saturating_sub(before)).as_secs_f64()))
                .unwrap_or_else(|| "?".into()),
            own_cpu().saturating_sub(cpu_before.1).as_secs_f64()
        );
    }
    drop(coffer);

    // ---- attribution: the same, one resource at a time
    moto.reset();
    let mut coffer = Workdir::new(&tf, &provider_binary());
    coffer.write("main.tf", &coffer_config(&proxy.endpoint, POLICIES));
    coffer.init();
    proxy.take();
    println!("attribution (instrumented, -parallelism=1: each AWS call falls inside one handler):");
    for (phase, args) in [
        ("apply", &["apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=1"][..]),
        ("no-op plan", &["plan", "-detailed-exitcode", "-input=false", "-no-color", "-parallelism=1"][..]),
    ] {
        let log = logs.path().join(format!("serial-{}.log", phase.replace(' ', "-")));
        coffer.set_env("TF_LOG_PROVIDER", "DEBUG");
        coffer.set_env("TF_LOG_PATH", log.to_str().unwrap());
        let start = Instant::now();
        let out = coffer.run(args);
        let wall = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "terraform {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        attribute(phase, wall, &parse_handled(&log), &proxy.take());
    }
}

fn no_op_plan(wd: &Workdir) -> String {
    let (code, out) = wd.plan_exit_code();
    assert_eq!(code, 0, "{out}");
    out
}

// ------------------------------------------------------------------ clean run

struct Measured {
    wall: Duration,
    sampled: SamplerResult,
    /// CPU of terraform and every process it waited for (the plugins).
    children_cpu: Duration,
    moto_cpu: Option<Duration>,
}

impl Measured {
    fn print(&self, what: &str) {
        println!("  {what:<44} {:>7.2} s", self.wall.as_secs_f64());
        let provider = self.sampled.provider_cpu;
        let terraform = self.children_cpu.saturating_sub(provider);
        println!(
            "    CPU: terraform {:.2} s, provider {:.2} s, moto {}  (2 cores × wall = {:.2} s); plugin peak RSS {:.1} MiB",
            terraform.as_secs_f64(),
            provider.as_secs_f64(),
            self.moto_cpu.map(|d| format!("{:.2} s", d.as_secs_f64())).unwrap_or_else(|| "?".into()),
            2.0 * self.wall.as_secs_f64(),
            self.sampled.peak_kib as f64 / 1024.0
        );
    }
}

fn measure(moto: &Moto, f: impl FnOnce() -> String) -> Measured {
    let moto_pid = moto_pid(moto.port());
    let moto_before = moto_pid.and_then(process_cpu);
    let children_before = children_cpu();
    let sampler = RssSampler::start();
    let start = Instant::now();
    let _ = f();
    let wall = start.elapsed();
    let sampled = sampler.finish();
    Measured {
        wall,
        sampled,
        children_cpu: children_cpu().saturating_sub(children_before),
        moto_cpu: moto_pid.and_then(process_cpu).zip(moto_before).map(|(after, before)| after.saturating_sub(before)),
    }
}

/// `/proc/PID/stat` fields after the command name (field 3 onwards).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 3 (state) is a letter; the rest are numbers.
    Some(rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect())
}

const TICK: Duration = Duration::from_millis(10); // CLK_TCK = 100 on Linux

/// utime + stime of a process.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let f = stat_fields(&pid.to_string())?;
    Some(TICK * (f[10] + f[11]) as u32)
}

/// The start time of a process, to tell a reused pid apart.
pub fn process_start(pid: &str) -> Option<u64> {
    stat_fields(pid).map(|f| f[18])
}

/// utime + stime of this process (all its threads).
fn own_cpu() -> Duration {
    let f = stat_fields("self").unwrap();
    TICK * (f[10] + f[11]) as u32
}

/// cutime + cstime of this process: the children it waited for.
fn children_cpu() -> Duration {
    let f = stat_fields("self").unwrap();
    TICK * (f[12] + f[13]) as u32
}

/// The Python process serving moto on `port` (the `Moto` child is a shell
/// wrapper around it).
fn moto_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_moto = args.first().is_some_and(|a| a.ends_with(b"python") || a.windows(6).any(|w| w == b"python"))
            && args.iter().any(|a| a.windows(4).any(|w| w == b"moto"))
            && args.windows(2).any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
        is_moto.then_some(pid)
    })
}

// ------------------------------------------------------------ provider log

/// One `handled` line of the provider's debug log.
pub struct Handled {
    pub rpc: String,
    pub type_name: String,
    pub micros: u64,
    /// When the handler finished (the provider's own timestamp), µs since the epoch.
    pub end_us: i64,
}

/// The `handled` lines of a Terraform log; through Terraform they read
/// `<tf time> [DEBUG] provider.terraform-provider-coffer_v0.1.0: <provider time> DEBUG
/// coffer_tfplugin::server::provider_service: handled rpc="ReadResource" type_name=coffer_backup_policy micros=1234`.
pub fn parse_handled(path: &Path) -> Vec<Handled> {
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find(" handled rpc=") else { continue };
        let Some(end_us) = line[..at]
            .split_whitespace()
            .rev()
            .find_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_micros())
        else {
            panic!("no provider timestamp in {line:?}")
        };
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for token in line[at + " handled ".len()..].split_whitespace() {
            if let Some((k, v)) = token.split_once('=') {
                fields.insert(k, v.trim_matches('"'));
            }
        }
        out.push(Handled {
            rpc: fields.get("rpc").copied().unwrap_or("?").to_string(),
            type_name: fields.get("type_name").copied().unwrap_or("").to_string(),
            micros: fields
                .get("micros")
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("no micros in {line:?}")),
            end_us,
        });
    }
    assert!(!out.is_empty(), "no `handled` lines in {}: is the provider logging at DEBUG?", path.display());
    out
}

// -------------------------------------------------------------- intervals

/// Sorted, non-overlapping intervals covering the given ones.
fn union(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.sort();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn length(v: &[(i64, i64)]) -> i64 {
    v.iter().map(|(s, e)| e - s).sum()
}

/// The intersection of two unions.
fn intersect(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 { i += 1 } else { j += 1 }
    }
    out
}

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

fn kind_of(h: &Handled) -> String {
    if h.type_name.is_empty() { h.rpc.clone() } else { format!("{} {}", h.rpc, h.type_name) }
}

fn report(phase: &str, wall: Duration, handled: &[Handled], calls: &[Call]) {
    let wall_us = wall.as_micros() as i64;
    let intervals: Vec<(i64, i64)> = handled.iter().map(|h| (h.end_us - h.micros as i64, h.end_us)).collect();
    let busy = union(intervals.clone());
    let sum: i64 = handled.iter().map(|h| h.micros as i64).sum();
    println!(
        "  {phase}: wall {:.2} s; in our handlers Σ {:.2} s ({:.0} % of wall), busy {:.2} s ({:.0} % of wall: at least one RPC inside the provider)",
        wall.as_secs_f64(),
        secs(sum),
        100.0 * sum as f64 / wall_us as f64,
        secs(length(&busy)),
        100.0 * length(&busy) as f64 / wall_us as f64,
    );

    let mut by_kind: BTreeMap<String, (usize, i64, i64)> = BTreeMap::new();
    for h in handled {
        let e = by_kind.entry(kind_of(h)).or_default();
        e.0 += 1;
        e.1 += h.micros as i64;
        e.2 = e.2.max(h.micros as i64);
    }
    println!("    {:<48} {:>5} {:>8} {:>8} {:>8}", "RPC", "calls", "Σ s", "mean ms", "max ms");
    let mut rows: Vec<_> = by_kind.into_iter().collect();
    rows.sort_by_key(|(_, (_, total, _))| -total);
    for (kind, (n, total, max)) in rows {
        println!(
            "    {:<48} {:>5} {:>8.2} {:>8.1} {:>8.1}",
            kind,
            n,
            secs(total),
            total as f64 / n as f64 / 1e3,
            max as f64 / 1e3,
        );
    }

    let aws_sum: i64 = calls.iter().map(|c| c.end_us - c.start_us).sum();
    let aws_busy = union(calls.iter().map(|c| (c.start_us, c.end_us)).collect());
    println!(
        "    AWS calls (moto, through the proxy): {} calls, Σ {:.2} s = {:.0} % of handler Σ; busy {:.2} s ({:.0} % of wall, {:.0} % of handler busy time)",
        calls.len(),
        secs(aws_sum),
        100.0 * aws_sum as f64 / sum.max(1) as f64,
        secs(length(&aws_busy)),
        100.0 * length(&aws_busy) as f64 / wall_us as f64,
        100.0 * length(&intersect(&aws_busy, &busy)) as f64 / length(&busy).max(1) as f64,
    );
    let mut by_op: BTreeMap<String, (usize, i64, Vec<i64>)> = BTreeMap::new();
    for c in calls {
        let e = by_op.entry(format!("{} {}", c.service, c.operation)).or_default();
        e.0 += 1;
        e.1 += c.end_us - c.start_us;
        e.2.push(c.end_us - c.start_us);
    }
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by_key(|(_, (_, total, _))| -total);
    println!("    {:<48} {:>5} {:>8} {:>8} {:>8}", "AWS operation", "calls", "Σ s", "mean ms", "p95 ms");
    for (op, (n, total, mut each)) in ops {
        each.sort();
        println!(
            "    {:<48} {:>5} {:>8.2} {:>8.1} {:>8.1}",
            op,
            n,
            secs(total),
            total as f64 / n as f64 / 1e3,
            each[((each.len() - 1) as f64 * 0.95).round() as usize] as f64 / 1e3
        );
    }
    let errors = calls.iter().filter(|c| c.status >= 400).count();
    if errors > 0 {
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for c in calls.iter().filter(|c| c.status >= 400) {
            *by_status.entry(format!("{} {} → {}", c.service, c.operation, c.status)).or_default() += 1;
        }
        println!("    of which answered with an error (expected not-founds included): {by_status:?}");
    }
}

/// With one handler at a time, each AWS call is inside the handler that
/// made it: per RPC kind, the mean handler time, the AWS calls each handler
/// made and their time, and the rest (our code, Terraform's gRPC excluded).
fn attribute(phase: &str, wall: Duration, handled: &[Handled], calls: &[Call]) {
    let intervals: Vec<(i64, i64)> = handled.iter().map(|h| (h.end_us - h.micros as i64, h.end_us)).collect();
    // kind → (handlers, Σ handler µs, Σ AWS µs, op → calls)
    let mut by_kind: BTreeMap<String, (usize, i64, i64, BTreeMap<String, usize>)> = BTreeMap::new();
    for h in handled {
        let e = by_kind.entry(kind_of(h)).or_default();
        e.0 += 1;
        e.1 += h.micros as i64;
    }
    let (mut outside, mut outside_us) = (0, 0);
    for call in calls {
        // The innermost handler around the call's midpoint (only concurrent
        // provider-level RPCs could make it ambiguous; the two clocks are
        // read in different processes, a few hundred µs apart at worst).
        let mid = (call.start_us + call.end_us) / 2;
        let owner = intervals
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| *s <= mid && mid <= *e)
            .min_by_key(|(_, (s, e))| e - s)
            .map(|(i, _)| &handled[i]);
        let Some(owner) = owner else {
            outside += 1;
            outside_us += call.end_us - call.start_us;
            continue;
        };
        let e = by_kind.get_mut(&kind_of(owner)).unwrap();
        e.2 += call.end_us - call.start_us;
        *e.3.entry(call.operation.clone()).or_default() += 1;
    }
    let sum: i64 = handled.iter().map(|h| h.micros as i64).sum();
    println!(
        "  {phase}: wall {:.2} s, in our handlers Σ {:.2} s ({:.0} %), of which AWS {:.2} s; {} AWS calls",
        wall.as_secs_f64(),
        secs(sum),
        100.0 * sum as f64 / wall.as_micros() as f64,
        secs(by_kind.values().map(|e| e.2).sum()),
        calls.len(),
    );
    let mut rows: Vec<_> = by_kind.into_iter().collect();
    rows.sort_by_key(|(_, (_, total, _, _))| -total);
    for (kind, (n, total, aws, ops)) in rows {
        if total < 1000 {
            continue;
        }
        let per = |x: i64| x as f64 / n as f64 / 1e3;
        let mut ops: Vec<_> = ops.into_iter().collect();
        ops.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
        let mix = ops
            .iter()
            .map(|(op, c)| {
                let each = *c as f64 / n as f64;
                if (each - each.round()).abs() < 0.005 { format!("{op} {each:.0}") } else { format!("{op} {each:.2}") }
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "    {kind} ×{n}: {:.1} ms each = AWS {:.1} ms + rest {:.1} ms; AWS calls each: {}",
            per(total),
            per(aws),
            per(total - aws),
            if mix.is_empty() { "none".to_string() } else { mix }
        );
    }
    if outside > 0 {
        println!("    outside any handler: {outside} AWS calls, {:.2} s", secs(outside_us));
    }
}

// ------------------------------------------------------------ timing proxy

/// One AWS request as the proxy saw it: from its first byte arriving to the
/// response's last byte received from moto.
pub struct Call {
    pub service: String,
    pub operation: String,
    pub status: u16,
    pub start_us: i64,
    pub end_us: i64,
}

/// An HTTP/1.1 relay on 127.0.0.1 in front of moto that timestamps every
/// request. Plain blocking threads, one per connection; the threads end with
/// their connections, the listener with the process.
pub struct TimingProxy {
    pub endpoint: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl TimingProxy {
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the timing proxy");
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        {
            let calls = calls.clone();
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let calls = calls.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = relay(client, upstream_port, &calls) {
                            eprintln!("timing proxy: connection ended with {e}");
                        }
                    });
                }
            });
        }
        Self { endpoint: format!("http://127.0.0.1:{port}"), calls }
    }

    /// The calls recorded so far, forgetting them.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

struct Head {
    raw: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads a request or response head; `None` at a clean end of stream.
/// Returns when its first byte arrived too.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<(Head, i64)>> {
    let mut raw = Vec::new();
    let mut first_at = None;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        first_at.get_or_insert_with(now_us);
        let end = line == b"\r\n" || line == b"\n";
        raw.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let first_line = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some((Head { raw, first_line, headers }, first_at.unwrap())))
}

/// Appends the body that follows `head` to `out`; returns true if the body
/// runs to the end of the stream (a response without a length).
fn read_body(r: &mut impl BufRead, head: &Head, is_response: bool, out: &mut Vec<u8>) -> std::io::Result<bool> {
    if head.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            out.extend_from_slice(&line);
            let size_text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                loop {
                    let mut trailer = Vec::new();
                    if r.read_until(b'\n', &mut trailer)? == 0 {
                        return Ok(false);
                    }
                    out.extend_from_slice(&trailer);
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(false);
                    }
                }
            }
            let start = out.len();
            out.resize(start + size + 2, 0);
            r.read_exact(&mut out[start..])?;
        }
    }
    if let Some(len) = head.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        let start = out.len();
        out.resize(start + len, 0);
        r.read_exact(&mut out[start..])?;
        return Ok(false);
    }
    if is_response {
        r.read_to_end(out)?;
        return Ok(true);
    }
    Ok(false)
}

fn relay(client: TcpStream, upstream_port: u16, calls: &Mutex<Vec<Call>>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        let Some((request, start_us)) = read_head(&mut from_client)? else { return Ok(()) };
        let mut bytes = request.raw.clone();
        let body_at = bytes.len();
        read_body(&mut from_client, &request, false, &mut bytes)?;
        if request.header("expect").is_some() {
            eprintln!("timing proxy: request with Expect: {:?}; relayed with its body at once", request.first_line);
        }
        let method = request.first_line.split(' ').next().unwrap_or("").to_string();
        let (service, operation) = classify(&request, &method, &bytes[body_at..]);

        // A kept-alive upstream connection may have been closed while idle:
        // then retry once on a fresh one.
        let mut response = Vec::new();
        let mut status = 0;
        let mut close = false;
        for attempt in 0..2 {
            let reused = upstream.is_some();
            if upstream.is_none() {
                let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
                stream.set_nodelay(true)?;
                upstream = Some((BufReader::new(stream.try_clone()?), stream));
            }
            let (up_r, up_w) = upstream.as_mut().unwrap();
            let sent = up_w.write_all(&bytes);
            let head = match sent.and_then(|_| read_head(up_r)) {
                Ok(Some((head, _))) => head,
                Ok(None) | Err(_) if reused && attempt == 0 => {
                    upstream = None;
                    continue;
                }
                Ok(None) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Err(e) => return Err(e),
            };
            let mut head = head;
            loop {
                status = head.first_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                response.extend_from_slice(&head.raw);
                if (100..200).contains(&status) {
                    head = read_head(up_r)?.ok_or(std::io::ErrorKind::UnexpectedEof)?.0;
                    continue;
                }
                break;
            }
            let no_body = method == "HEAD" || status == 204 || status == 304;
            let to_eof = !no_body && read_body(up_r, &head, true, &mut response)?;
            close = to_eof
                || head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"))
                || (head.first_line.starts_with("HTTP/1.0")
                    && !head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")));
            break;
        }
        // Taken before handing the response on: a thread switch to the
        // reader woken by the write could otherwise land inside the span.
        let end_us = now_us();
        to_client.write_all(&response)?;
        calls.lock().unwrap().push(Call { service, operation, status, start_us, end_us });
        if close {
            return Ok(());
        }
    }
}

/// (service, operation) of an AWS request: the service from the SigV4
/// credential scope, the operation from `X-Amz-Target` (JSON protocols),
/// `Action=` (query protocols: EC2, STS), `x-id` (S3), or the REST route.
fn classify(request: &Head, method: &str, body: &[u8]) -> (String, String) {
    let service = request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split(['/', ',']).nth(3))
        .unwrap_or("?")
        .to_string();
    if let Some(target) = request.header("x-amz-target") {
        return (service, target.rsplit('.').next().unwrap_or(target).to_string());
    }
    let body = String::from_utf8_lossy(body);
    if let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return (service, action.to_string());
    }
    let target = request.first_line.split(' ').nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query_keys: Vec<&str> =
        query.split('&').filter(|q| !q.is_empty()).map(|q| q.split('=').next().unwrap()).collect();
    if let Some(id) = query.split('&').find_map(|kv| kv.strip_prefix("x-id=")) {
        return (service, id.to_string());
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let operation = match (service.as_str(), segments.as_slice()) {
        ("scheduler", [collection, rest @ ..]) => {
            let noun = match *collection {
                "schedules" => "Schedule",
                "schedule-groups" => "ScheduleGroup",
                other => other,
            };
            match (method, rest.is_empty()) {
                ("GET", true) => format!("List{noun}s"),
                ("GET", false) => format!("Get{noun}"),
                ("POST", _) => format!("Create{noun}"),
                ("PUT", _) => format!("Update{noun}"),
                ("DELETE", _) => format!("Delete{noun}"),
                _ => format!("{method} /{collection}"),
            }
        }
        ("s3", [_bucket]) => match (method, query_keys.first()) {
            ("HEAD", _) => "HeadBucket".to_string(),
            ("PUT", None) => "CreateBucket".to_string(),
            ("GET", Some(&"list-type")) => "ListObjectsV2".to_string(),
            (_, Some(sub)) => format!("{method} bucket?{sub}"),
            (_, None) => format!("{method} bucket"),
        },
        ("s3", [_bucket, ..]) => match method {
            "HEAD" => "HeadObject".to_string(),
            _ => format!("{method} object"),
        },
        (_, [first, ..]) => format!("{method} /{first}"),
        (_, []) => format!("{method} /"),
    };
    (service, operation)
}
