//! Plugin benchmarks, each beside a peer measured in the same run:
//! - exec → handshake line, vs exec of /bin/true;
//! - GetProviderSchema latency over mTLS;
//! - the plugin's peak RSS;
//! - `terraform apply` and a no-op `plan` of 50 worker configurations against
//!   moto, vs the same for 50 built-in `terraform_data` resources;
//! - the same for 100 backup policies × 3 rules, with the provider's share of
//!   the wall time (time inside its RPC handlers, and how much of that is
//!   waiting on AWS calls); see `policies.rs`.
//!
//! Run: `make bench` (or `cargo bench -p coffer-provider --bench plugin`).
//! Figures go to docs/benchmarks.md.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod policies;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffer_tfplugin::server::tfplugin6::get_provider_schema;
use support::plugin::{ClientIdentity, PluginProcess};
use support::{Moto, Workdir, block_on, provider_binary, terraform_versions};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "median {:>8.3} ms   p95 {:>8.3} ms   min {:>8.3} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.95).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3
    )
}

fn handshake() {
    const RUNS: usize = 30;
    let identity = ClientIdentity::terraform();
    let plugin: Vec<Duration> =
        (0..RUNS).map(|_| PluginProcess::start(&provider_binary(), Some(&identity)).handshake_time).collect();
    let peer: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            Command::new("/bin/true").status().unwrap();
            start.elapsed()
        })
        .collect();
    println!("exec → handshake line ({RUNS} runs, mTLS):  {}", summary(plugin));
    println!("peer: exec of /bin/true to exit:           {}", summary(peer));
}

fn schema_latency() {
    const CALLS: usize = 500;
    let identity = ClientIdentity::terraform();
    let plugin = PluginProcess::start(&provider_binary(), Some(&identity));
    let samples = block_on(async {
        let mut client = plugin.connect(Some(&identity)).await.unwrap();
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let start = Instant::now();
            client.get_provider_schema(get_provider_schema::Request {}).await.unwrap();
            samples.push(start.elapsed());
        }
        samples
    });
    println!("GetProviderSchema over mTLS ({CALLS} calls): {}", summary(samples));
    println!("plugin peak RSS after them:                {:.1} MiB", plugin.peak_rss_kib() as f64 / 1024.0);
}

/// Samples the peak RSS and the CPU time of every running plugin process
/// (the ones terraform starts) until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<HashMap<(String, u64), Duration>>>,
}

struct SamplerResult {
    peak_kib: u64,
    /// utime + stime of every plugin process seen, as last sampled.
    provider_cpu: Duration,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak_kib) = (stop.clone(), peak_kib.clone());
            std::thread::spawn(move || {
                // (pid, start time) → CPU time last seen.
                let mut cpu = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                        // comm is truncated to 15 characters.
                        if comm.trim() == "terraform-provi" {
                            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                            if let Some(kib) = status
                                .lines()
                                .find_map(|l| l.strip_prefix("VmHWM:"))
                                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                            {
                                peak_kib.fetch_max(kib, Ordering::Relaxed);
                            }
                            let pid = entry.file_name().to_string_lossy().into_owned();
                            if let (Some(start), Some(used)) =
                                (policies::process_start(&pid), pid.parse().ok().and_then(policies::process_cpu))
                            {
                                cpu.insert((pid, start), used);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                cpu
            })
        };
        Self { stop, peak_kib, thread: Some(thread) }
    }

    fn finish(mut self) -> SamplerResult {
        self.stop.store(true, Ordering::Relaxed);
        let cpu = self.thread.take().unwrap().join().unwrap();
        SamplerResult { peak_kib: self.peak_kib.load(Ordering::Relaxed), provider_cpu: cpu.values().sum() }
    }
}

fn timed(what: &str, f: impl FnOnce() -> String) -> Duration {
    let start = Instant::now();
    let _ = f();
    let elapsed = start.elapsed();
    println!("  {what:<44} {:>7.2} s", elapsed.as_secs_f64());
    elapsed
}

fn fifty_resources() {
    const N: usize = 50;
    let tf = terraform_versions().pop().unwrap();
    let moto = Moto::start();
    println!("terraform {} against moto, {N} resources:", tf.version);

    let coffer = Workdir::new(&tf, &provider_binary());
    let mut config = support::provider_block(&moto, "us-east-1");
    // Every default resolved (default-VPC subnet, AMI by architecture), as
    // a user would write it.
    config += &format!(
        "resource \"coffer_worker_configuration\" \"w\" {{\n  count = {N}\n  name = \"w${{count.index}}\"\n}}\n"
    );
    coffer.write("main.tf", &config);
    coffer.init();
    let sampler = RssSampler::start();
    timed(&format!("apply, {N} coffer_worker_configuration"), || coffer.apply());
    let plan = timed(&format!("no-op plan, {N} coffer_worker_configuration"), || {
        let (code, out) = coffer.plan_exit_code();
        assert_eq!(code, 0, "{out}");
        out
    });
    let peak = sampler.finish().peak_kib;
    println!("  plugin peak RSS during apply + plan          {:>7.1} MiB", peak as f64 / 1024.0);

    if tf.at_least(1, 4) {
        let peer = Workdir::new(&tf, &provider_binary());
        peer.write(
            "main.tf",
            &format!("resource \"terraform_data\" \"d\" {{\n  count = {N}\n  input = count.index\n}}\n"),
        );
        peer.init();
        timed(&format!("peer: apply, {N} terraform_data"), || peer.apply());
        let peer_plan = timed(&format!("peer: no-op plan, {N} terraform_data"), || {
            let (code, out) = peer.plan_exit_code();
            assert_eq!(code, 0, "{out}");
            out
        });
        println!(
            "  no-op plan: coffer costs {:+.2} s over the built-in peer",
            plan.as_secs_f64() - peer_plan.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument selects one benchmark.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    coffer_tfplugin::server::tls::install_crypto_provider();
    if wanted("handshake") {
        handshake();
    }
    if wanted("schema") {
        schema_latency();
    }
    if wanted("fifty") {
        fifty_resources();
    }
    if wanted("policies") {
        policies::run();
    }
}
