//! Executor benchmark: `coffer run` of a backup policy over 200 EC2 instances
//! (100 in us-east-1, 100 in eu-west-1, one 8 GiB gp3 root volume each) and
//! of one over 50 RDS PostgreSQL instances (25 per region), against moto.
//! Both policies snapshot every resource and replicate the us-east-1
//! snapshots to eu-west-1.
//!
//! Each policy runs the real release `coffer` binary, in six modes, each on a
//! freshly reset and reseeded moto (so every run does the same work):
//! - parallel, direct: `--concurrency 16`, straight to moto (the clean wall
//!   time and peak RSS);
//! - parallel: the same through a counting proxy (the AWS calls it made);
//! - `--concurrency 1`: snapshots started one at a time *per region*; the
//!   two regions, and the waits and copies (which hold no start slot), still
//!   overlap, so several calls can be in flight;
//! - one call at a time: `--concurrency 1` with the proxy letting a single
//!   request through to moto at once: the same API calls made one after
//!   another, the baseline of the speed-up;
//! - parallel and one call at a time again, with the proxy holding every
//!   answer back 50 ms: what concurrency buys when calls wait on the network
//!   and AWS rather than on the emulator's CPU.
//!
//! moto is one Python process (one core at most on this 2-core machine),
//! so moto's CPU time for a run's calls bounds how fast any client can get
//! them answered; the report gives that ceiling beside the speed-up.
//!
//! Run: `cargo bench --locked -p coffer-provider --bench executor`
//! (`-- ec2` or `-- rds` runs one policy; `COFFER_BENCH_REPS=n` sets the
//! repetitions, default 3). Figures go to docs/benchmarks.md.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceType, ResourceType, Tag, TagSpecification, VolumeType,
};
use coffer_model::policy::{Keep, PolicyDocument, Replicate, Retain, Rule, Source};
use coffer_model::region_mapping::{Encrypt, RegionMappingDocument};
use support::Moto;

#[path = "measure.rs"]
mod measure;
use measure::{HwmSampler, children_cpu, drain, moto_pid, process_cpu};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const EC2_PER_REGION: i32 = 100;
const RDS_PER_REGION: usize = 25;
const TAG: (&str, &str) = ("Backup", "bench");
const MAPPING: &str = "use1-to-euw1";

// ------------------------------------------------------------------ estate

/// 100 instances per region in one RunInstances call each (moto creates the
/// root volume of every one), and 25 DB instances per region.
async fn seed_estate(moto: &Moto) {
    for region in REGIONS {
        let config = moto.sdk_config(region).await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        ec2.run_instances()
            // moto checks no AMI when its default AMIs are not loaded.
            .image_id("ami-0c0ffee0c0ffee000")
            .instance_type(InstanceType::T3Micro)
            .min_count(EC2_PER_REGION)
            .max_count(EC2_PER_REGION)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(EbsBlockDevice::builder().volume_size(8).volume_type(VolumeType::Gp3).build())
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key(TAG.0).value(TAG.1).build())
                    .build(),
            )
            .send()
            .await
            .expect("RunInstances");
        let rds = aws_sdk_rds::Client::new(&config);
        let tags = support::estate::tags(&[TAG]);
        for n in 0..RDS_PER_REGION {
            support::estate::db_instance(&rds, &format!("bench-db-{n:02}"), &tags).await;
        }
    }
}

fn daily_rule() -> Rule {
    Rule {
        name: "daily".into(),
        cron: "0 2 * * *".into(),
        timezone: "UTC".into(),
        snapshot: Some(Keep { retain: Retain { count: Some(7), days: None } }),
        replicate: Some(Replicate {
            region_mapping_ids: vec![MAPPING.into()],
            retain: Retain { count: Some(3), days: None },
        }),
        backup: None,
        archive: None,
    }
}

fn policy(name: &str, kind: &str) -> PolicyDocument {
    PolicyDocument {
        format_version: 1,
        name: name.into(),
        kind: kind.parse().expect("ec2 or rds"),
        description: None,
        enabled: true,
        source: Source {
            regions: REGIONS.iter().map(|r| r.to_string()).collect(),
            ids: Vec::new(),
            tags: [(TAG.0.to_string(), TAG.1.to_string())].into(),
            exclude_ids: Vec::new(),
        },
        rules: vec![daily_rule()],
        worker_configuration_ids: Vec::new(),
        scheduler_role_arn: None,
        tags: BTreeMap::new(),
        max_run_time: None,
        snapshot_instance_type: None,
        volumes_per_worker: None,
    }
}

/// The two policies and the mapping, as `coffer_backup_policy` and
/// `coffer_region_mapping` write them into the catalog.
async fn write_catalog(moto: &Moto) {
    let dir = tempfile::Builder::new().prefix("coffer-bench-").tempdir().unwrap();
    let executor = support::estate::executor(moto, dir.path(), 4).await;
    let catalog = executor.catalog();
    let mapping = RegionMappingDocument {
        format_version: 1,
        name: MAPPING.into(),
        source_region: REGIONS[0].into(),
        target_region: REGIONS[1].into(),
        target_role_arn: None,
        kms_key_arn: None,
        encrypt: Encrypt::EncryptedOnly,
    };
    catalog.create(MAPPING, &mapping).await.expect("write the region mapping");
    for (name, kind) in [("bench-ec2", "ec2"), ("bench-rds", "rds")] {
        catalog.create(name, &policy(name, kind)).await.expect("write a policy");
    }
}

/// A clean slate with the same estate and catalog for every measured run.
fn reset_and_seed(moto: &Moto) {
    moto.reset();
    support::block_on(async {
        seed_estate(moto).await;
        write_catalog(moto).await;
    });
}

// ---------------------------------------------------------- coffer process

struct Outcome {
    wall: Duration,
    peak_rss_kib: u64,
    /// utime + stime of the coffer process.
    cpu: Duration,
    /// The session, as `coffer run --json` prints it.
    session: serde_json::Value,
    exit_code: i32,
    stderr: String,
}

/// Runs `coffer run` against `endpoint`, sampling its peak RSS. The run id
/// is left to `coffer` (fresh, as for a manual run; moto is reset between
/// runs anyway).
fn run_coffer(endpoint: &str, policy: &str, concurrency: usize) -> Outcome {
    let concurrency = concurrency.to_string();
    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut child = support::estate::coffer_command(endpoint)
        .args(["run", "--policy", policy, "--json", "--concurrency", &concurrency])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    // Drained on threads: a full pipe would stall the child mid-run.
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let sampler = HwmSampler::start(child.id());
    let status = child.wait().expect("wait for coffer");
    let wall = start.elapsed();
    let peak_rss_kib = sampler.finish();
    let cpu = children_cpu().saturating_sub(cpu_before);
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let session = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("coffer run --policy {policy} printed no session ({e}; exit {status}):\n{stdout}\n{stderr}")
    });
    Outcome { wall, peak_rss_kib, cpu, session, exit_code: status.code().unwrap_or(-1), stderr }
}

// ----------------------------------------------------------- counting proxy

/// One AWS request as the proxy relayed it.
struct Call {
    /// "ec2 CreateSnapshots", "rds DescribeDBSnapshots", "s3 PUT object"…
    operation: String,
    status: u16,
    /// From handing the request to moto to the response's last byte.
    sent_us: i64,
    done_us: i64,
}

/// An HTTP/1.1 relay on 127.0.0.1 in front of moto that records every
/// request and, when `serial` is set, lets one request at a time through to
/// moto (the others wait at the proxy, not in moto's queue), and can hold
/// each answer back for a while (a stand-in for network and AWS latency).
/// Blocking threads, one per client connection.
struct Proxy {
    endpoint: String,
    calls: Arc<Mutex<Vec<Call>>>,
    serial: Arc<AtomicBool>,
    /// Microseconds added to every call after moto's answer.
    delay_us: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let serial = Arc::new(AtomicBool::new(false));
        let delay_us = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Mutex::new(()));
        {
            let (calls, serial, delay_us) = (calls.clone(), serial.clone(), delay_us.clone());
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let (calls, serial, delay_us, gate) =
                        (calls.clone(), serial.clone(), delay_us.clone(), gate.clone());
                    std::thread::spawn(move || {
                        let settings = Relay { upstream_port, serial: &serial, delay_us: &delay_us, gate: &gate };
                        if let Err(e) = relay(client, &settings, &calls) {
                            eprintln!("proxy: connection ended with {e}");
                        }
                    });
                }
            });
        }
        Self { endpoint: format!("http://127.0.0.1:{port}"), calls, serial, delay_us }
    }

    fn set_mode(&self, serial: bool, delay: Duration) {
        self.serial.store(serial, Ordering::SeqCst);
        self.delay_us.store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// The calls recorded so far, forgetting them.
    fn take(&self) -> Vec<Call> {
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

    fn status(&self) -> u16 {
        self.first_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// Reads a request or response head; `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
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
    Ok(Some(Head { raw, first_line, headers }))
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
                    if r.read_until(b'\n', &mut trailer)? == 0 || trailer == b"\r\n" || trailer == b"\n" {
                        out.extend_from_slice(&trailer);
                        return Ok(false);
                    }
                    out.extend_from_slice(&trailer);
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

/// What one relay thread shares with the others.
struct Relay<'a> {
    upstream_port: u16,
    serial: &'a AtomicBool,
    delay_us: &'a AtomicU64,
    /// Held from sending a request to moto until its answer is passed on,
    /// when `serial` is set.
    gate: &'a Mutex<()>,
}

fn relay(client: TcpStream, settings: &Relay<'_>, calls: &Mutex<Vec<Call>>) -> std::io::Result<()> {
    let upstream_port = settings.upstream_port;
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        let Some(request) = read_head(&mut from_client)? else { return Ok(()) };
        let mut bytes = request.raw.clone();
        let body_at = bytes.len();
        read_body(&mut from_client, &request, false, &mut bytes)?;
        let method = request.first_line.split(' ').next().unwrap_or("").to_string();
        let operation = classify(&request, &method, &bytes[body_at..]);

        let turn = settings.serial.load(Ordering::SeqCst).then(|| settings.gate.lock().unwrap());
        let sent_us = now_us();
        let mut response = Vec::new();
        let mut status = 0;
        let mut close = false;
        // A kept-alive upstream connection may have been closed while idle:
        // then retry once on a fresh one.
        for attempt in 0..2 {
            let reused = upstream.is_some();
            if upstream.is_none() {
                let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
                stream.set_nodelay(true)?;
                upstream = Some((BufReader::new(stream.try_clone()?), stream));
            }
            let (up_r, up_w) = upstream.as_mut().unwrap();
            let mut head = match up_w.write_all(&bytes).and_then(|_| read_head(up_r)) {
                Ok(Some(head)) => head,
                Ok(None) | Err(_) if reused && attempt == 0 => {
                    upstream = None;
                    continue;
                }
                Ok(None) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Err(e) => return Err(e),
            };
            // Skip interim (1xx) responses.
            while (100..200).contains(&head.status()) {
                response.extend_from_slice(&head.raw);
                head = read_head(up_r)?.ok_or(std::io::ErrorKind::UnexpectedEof)?;
            }
            status = head.status();
            response.extend_from_slice(&head.raw);
            let no_body = method == "HEAD" || status == 204 || status == 304;
            let to_eof = !no_body && read_body(up_r, &head, true, &mut response)?;
            close = to_eof || head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
            break;
        }
        let done_us = now_us();
        calls.lock().unwrap().push(Call { operation, status, sent_us, done_us });
        if close {
            upstream = None;
        }
        // Inside the gate when serial: the next call starts only once this
        // one's whole latency has passed.
        std::thread::sleep(Duration::from_micros(settings.delay_us.load(Ordering::SeqCst)));
        drop(turn);
        to_client.write_all(&response)?;
    }
}

/// "service Operation": the service from the SigV4 credential scope, the
/// operation from `Action=` (EC2, RDS, STS: query protocol), `X-Amz-Target`
/// (JSON protocols), or S3's method and whether it names an object.
fn classify(request: &Head, method: &str, body: &[u8]) -> String {
    let service = request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split(['/', ',']).nth(3))
        .unwrap_or("?");
    if let Some(action) = String::from_utf8_lossy(body).split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return format!("{service} {action}");
    }
    if let Some(target) = request.header("x-amz-target") {
        return format!("{service} {}", target.rsplit('.').next().unwrap_or(target));
    }
    let target = request.first_line.split(' ').nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(id) = query.split('&').find_map(|kv| kv.strip_prefix("x-id=")) {
        return format!("{service} {id}");
    }
    let what = if path.trim_matches('/').contains('/') { "object" } else { "bucket" };
    format!("{service} {method} {what}")
}

// ------------------------------------------------------------------ passes

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// `--concurrency 16`, straight to moto.
    ParallelDirect,
    /// `--concurrency 16` through the proxy.
    Parallel,
    /// `--concurrency 1` through the proxy: one snapshot started at a time
    /// per region.
    PerRegion1,
    /// `--concurrency 1`, the proxy letting one request at a time through.
    OneCallAtATime,
    /// [`Mode::Parallel`] with [`ADDED_LATENCY`] on every call.
    ParallelLatency,
    /// [`Mode::OneCallAtATime`] with [`ADDED_LATENCY`] on every call.
    OneCallAtATimeLatency,
}

const MODES: [Mode; 6] = [
    Mode::ParallelDirect,
    Mode::Parallel,
    Mode::PerRegion1,
    Mode::OneCallAtATime,
    Mode::ParallelLatency,
    Mode::OneCallAtATimeLatency,
];

/// Added by the proxy to every call in the `…Latency` modes, after moto has
/// answered: a stand-in for the network and AWS-side time of a real call,
/// which costs the client nothing but waiting (moto answers in a few ms of
/// its own CPU, which is all the other modes can overlap).
const ADDED_LATENCY: Duration = Duration::from_millis(50);

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::ParallelDirect => "parallel (c 16), direct to moto",
            Mode::Parallel => "parallel (c 16), via proxy",
            Mode::PerRegion1 => "c 1 (per region), via proxy",
            Mode::OneCallAtATime => "one call at a time (c 1, serial proxy)",
            Mode::ParallelLatency => "parallel (c 16), +50 ms per call",
            Mode::OneCallAtATimeLatency => "one call at a time, +50 ms per call",
        }
    }

    fn concurrency(self) -> usize {
        match self {
            Mode::ParallelDirect | Mode::Parallel | Mode::ParallelLatency => 16,
            Mode::PerRegion1 | Mode::OneCallAtATime | Mode::OneCallAtATimeLatency => 1,
        }
    }

    fn serial(self) -> bool {
        matches!(self, Mode::OneCallAtATime | Mode::OneCallAtATimeLatency)
    }

    fn added_latency(self) -> Duration {
        match self {
            Mode::ParallelLatency | Mode::OneCallAtATimeLatency => ADDED_LATENCY,
            _ => Duration::ZERO,
        }
    }
}

struct Bench {
    name: &'static str,
    what: &'static str,
    resources: usize,
    snapshots: usize,
    replicas: usize,
}

const BENCHES: [Bench; 2] = [
    Bench {
        name: "bench-ec2",
        what: "200 EC2 instances (100 per region, 8 GiB gp3 root volume each)",
        resources: 200,
        snapshots: 200,
        replicas: 100,
    },
    Bench {
        name: "bench-rds",
        what: "50 RDS postgres instances (25 per region)",
        resources: 50,
        snapshots: 50,
        replicas: 25,
    },
];

/// One measured run.
struct Measured {
    outcome: Outcome,
    /// Through the proxy only.
    calls: Option<Vec<Call>>,
    moto_cpu: Option<Duration>,
    resources: usize,
    snapshots: usize,
    replicas: usize,
    failures: Vec<String>,
}

impl Measured {
    fn session_outcome(&self) -> &str {
        self.outcome.session["outcome"].as_str().unwrap_or("?")
    }

    /// Σ over calls of the time moto took to answer each.
    fn call_time(&self) -> Option<Duration> {
        let calls = self.calls.as_ref()?;
        Some(Duration::from_micros(calls.iter().map(|c| (c.done_us - c.sent_us) as u64).sum()))
    }

    /// Wall time during which at least one call was in moto.
    fn moto_busy(&self) -> Option<Duration> {
        let calls = self.calls.as_ref()?;
        let mut spans: Vec<(i64, i64)> = calls.iter().map(|c| (c.sent_us, c.done_us)).collect();
        spans.sort();
        let (mut total, mut open): (i64, Option<(i64, i64)>) = (0, None);
        for (s, e) in spans {
            open = match open {
                Some((os, oe)) if s <= oe => Some((os, oe.max(e))),
                Some((os, oe)) => {
                    total += oe - os;
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        total += open.map(|(s, e)| e - s).unwrap_or(0);
        Some(Duration::from_micros(total as u64))
    }
}

fn measure(moto: &Moto, proxy: &Proxy, moto_pid: Option<u32>, bench: &Bench, mode: Mode) -> Measured {
    reset_and_seed(moto);
    proxy.set_mode(mode.serial(), mode.added_latency());
    proxy.take();
    let endpoint = if mode == Mode::ParallelDirect { &moto.endpoint } else { &proxy.endpoint };
    let moto_before = moto_pid.and_then(process_cpu);
    let outcome = run_coffer(endpoint, bench.name, mode.concurrency());
    let moto_cpu = moto_pid.and_then(process_cpu).zip(moto_before).map(|(a, b)| a.saturating_sub(b));
    let calls = (mode != Mode::ParallelDirect).then(|| proxy.take());
    proxy.set_mode(false, Duration::ZERO);

    let records = outcome.session["resources"].as_array().cloned().unwrap_or_default();
    let made = |kind: &str| {
        records
            .iter()
            .flat_map(|r| r["snapshots"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["kind"] == kind)
            .count()
    };
    let mut failures: Vec<String> = records
        .iter()
        .filter(|r| r["outcome"] != "Success")
        .map(|r| {
            format!(
                "{} {}: {} {}",
                r["id"].as_str().unwrap_or("?"),
                r["outcome"].as_str().unwrap_or("?"),
                r["error"].as_str().unwrap_or(""),
                r["warnings"]
            )
        })
        .collect();
    failures.extend(outcome.session["messages"].as_array().into_iter().flatten().map(|m| format!("message: {m}")));
    failures.extend(
        outcome.session["retention"]["errors"].as_array().into_iter().flatten().map(|m| format!("retention: {m}")),
    );
    Measured {
        resources: records.len(),
        snapshots: made("snapshot"),
        replicas: made("replica"),
        outcome,
        calls,
        moto_cpu,
        failures,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// NaN for no values (moto's pid not found): printed, not a panic.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    if v.len() > 1 { format!("{:.2} ({min:.2}–{max:.2})", median(v.to_vec())) } else { format!("{:.2}", v[0]) }
}

type Runs = BTreeMap<Mode, Vec<Measured>>;

fn report(bench: &Bench, runs: &Runs) {
    println!();
    println!("{}: {}", bench.name, bench.what);
    println!(
        "  {:<40} {:>19} {:>6} {:>6} {:>9} {:>10} {:>9} {:>6} {:>16}",
        "mode", "wall s (med, range)", "calls", "errors", "moto CPU", "coffer CPU", "peak RSS", "busy", "session"
    );
    for (mode, all) in runs {
        print_row(bench, *mode, all);
    }
    println!("  (errors: calls answered ≥ 400; busy: share of the wall with ≥ 1 call inside moto;");
    println!("   session: outcome resources/snapshots/replicas; CPU and RSS: medians)");

    let wall = |mode: Mode| median(runs[&mode].iter().map(|m| secs(m.outcome.wall)).collect());
    let moto_cpu = |mode: Mode| median(runs[&mode].iter().filter_map(|m| m.moto_cpu.map(secs)).collect());
    let (parallel, serial) = (wall(Mode::Parallel), wall(Mode::OneCallAtATime));
    println!(
        "  speed-up, one call at a time ÷ parallel (both via proxy): {:.2}× ({serial:.2} s → {parallel:.2} s); \
         c 1 ÷ parallel: {:.2}×",
        serial / parallel,
        wall(Mode::PerRegion1) / parallel
    );
    let answering = median(runs[&Mode::OneCallAtATime].iter().map(|m| secs(m.call_time().unwrap())).collect());
    println!(
        "  one call at a time: moto answering {answering:.2} s = {:.0} % of the wall; ceiling on moto: \
         that wall ÷ moto's CPU in the parallel run = {:.2}× ({serial:.2} s ÷ {:.2} s)",
        100.0 * answering / serial,
        serial / moto_cpu(Mode::Parallel),
        moto_cpu(Mode::Parallel)
    );
    if runs.contains_key(&Mode::ParallelLatency) {
        let (parallel, serial) = (wall(Mode::ParallelLatency), wall(Mode::OneCallAtATimeLatency));
        println!(
            "  with +{} ms per call: one call at a time ÷ parallel = {:.2}× ({serial:.2} s → {parallel:.2} s)",
            ADDED_LATENCY.as_millis(),
            serial / parallel
        );
    }
    print_operations(runs);
}

fn print_row(bench: &Bench, mode: Mode, all: &[Measured]) {
    let walls: Vec<f64> = all.iter().map(|m| secs(m.outcome.wall)).collect();
    let first = &all[0];
    let (calls, errors, busy) = match &first.calls {
        Some(calls) => {
            let shares = all.iter().map(|m| 100.0 * secs(m.moto_busy().unwrap()) / secs(m.outcome.wall)).collect();
            (
                calls.len().to_string(),
                calls.iter().filter(|c| c.status >= 400).count().to_string(),
                format!("{:.0} %", median(shares)),
            )
        }
        None => ("—".into(), "—".into(), "—".into()),
    };
    let outcomes: Vec<&str> = all.iter().map(|m| m.session_outcome()).collect();
    let session = format!(
        "{} {}/{}/{}",
        if outcomes.iter().all(|o| *o == "Success") { "Success".to_string() } else { outcomes.join(",") },
        first.resources,
        first.snapshots,
        first.replicas
    );
    println!(
        "  {:<40} {:>19} {:>6} {:>6} {:>8.2}s {:>9.2}s {:>5.1} MiB {:>6} {:>16}",
        mode.label(),
        spread(&walls),
        calls,
        errors,
        median(all.iter().filter_map(|m| m.moto_cpu.map(secs)).collect()),
        median(all.iter().map(|m| secs(m.outcome.cpu)).collect()),
        median(all.iter().map(|m| m.outcome.peak_rss_kib as f64 / 1024.0).collect()),
        busy,
        session
    );
    for m in all {
        if (m.resources, m.snapshots, m.replicas) != (bench.resources, bench.snapshots, bench.replicas) {
            println!(
                "    UNEXPECTED: {} resources / {} snapshots / {} replicas, expected {}/{}/{}",
                m.resources, m.snapshots, m.replicas, bench.resources, bench.snapshots, bench.replicas
            );
        }
        for f in m.failures.iter().take(5) {
            println!("    not a success: {f}");
        }
        if m.outcome.exit_code != 0 {
            println!("    exit {}; stderr tail: {}", m.outcome.exit_code, tail(&m.outcome.stderr, 5));
        }
    }
    let counts: Vec<usize> = all.iter().filter_map(|m| m.calls.as_ref().map(Vec::len)).collect();
    if counts.iter().any(|c| Some(c) != counts.first()) {
        println!("    call counts differ between repetitions: {counts:?}");
    }
}

/// Per operation, from the first repetition: moto's answer time one call
/// at a time (mean, and over the first and last tenth of those calls: moto
/// filters by scanning everything the region holds, so calls slow down as
/// the run adds snapshots) and under `--concurrency 16` (queued in moto).
fn print_operations(runs: &Runs) {
    let latencies = |mode: Mode| {
        let mut ops: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut calls: Vec<&Call> = runs[&mode][0].calls.as_ref().unwrap().iter().collect();
        calls.sort_by_key(|c| c.sent_us);
        for c in calls {
            ops.entry(c.operation.clone()).or_default().push(c.done_us - c.sent_us);
        }
        ops
    };
    let mean_ms = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len().max(1) as f64 / 1e3;
    let (alone, loaded) = (latencies(Mode::OneCallAtATime), latencies(Mode::Parallel));
    println!(
        "    {:<32} {:>6} {:>15} {:>22} {:>13}",
        "AWS call (first repetition)", "calls", "ms, one at once", "first → last tenth, ms", "ms, parallel"
    );
    let mut rows: Vec<_> = alone.iter().collect();
    rows.sort_by_key(|(_, each)| std::cmp::Reverse(each.iter().sum::<i64>()));
    for (op, each) in rows {
        let tenth = each.len() / 10;
        let trend = if tenth >= 2 {
            format!("{:.1} → {:.1}", mean_ms(&each[..tenth]), mean_ms(&each[each.len() - tenth..]))
        } else {
            String::new()
        };
        let under_load = loaded.get(op).map(|v| format!("{:.1}", mean_ms(v))).unwrap_or_default();
        println!("    {op:<32} {:>6} {:>15.1} {trend:>22} {under_load:>13}", each.len(), mean_ms(each));
    }
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for c in runs[&Mode::Parallel][0].calls.as_ref().unwrap().iter().filter(|c| c.status >= 400) {
        *errors.entry(format!("{} → {}", c.operation, c.status)).or_default() += 1;
    }
    if !errors.is_empty() {
        println!(
            "    answered with an error, parallel run (not-founds of the look-up before each create are expected): {errors:?}"
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

fn main() {
    // `cargo bench` passes --bench; any other argument selects a policy.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let reps: usize = std::env::var("COFFER_BENCH_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);

    let moto = Moto::start();
    let moto_pid = moto_pid(moto.port());
    let proxy = Proxy::start(moto.port());
    println!(
        "coffer run against moto (pid {}), {reps} repetition(s) of each mode, each on a freshly reset and seeded moto",
        moto_pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
    );

    // moto imports each service's code and builds each region's backend on
    // first use (seconds of CPU): keep that out of the figures.
    reset_and_seed(&moto);
    for bench in BENCHES.iter().filter(|b| wanted(b.name)) {
        let warm = run_coffer(&proxy.endpoint, bench.name, 16);
        println!("warm-up {}: {:.2} s, {}", bench.name, secs(warm.wall), warm.session["outcome"]);
    }
    proxy.take();

    for bench in BENCHES.iter().filter(|b| wanted(b.name)) {
        let mut runs = Runs::new();
        // Repetitions outermost, so drift in the machine's speed spreads over
        // every mode alike.
        for rep in 1..=reps {
            for mode in MODES {
                let m = measure(&moto, &proxy, moto_pid, bench, mode);
                eprintln!(
                    "  {} {} #{rep}: {:.2} s, {} calls, {} ({} resources)",
                    bench.name,
                    mode.label(),
                    secs(m.outcome.wall),
                    m.calls.as_ref().map(Vec::len).unwrap_or(0),
                    m.session_outcome(),
                    m.resources
                );
                runs.entry(mode).or_default().push(m);
            }
        }
        report(bench, &runs);
    }
    let _ = std::io::stdout().flush();
}
