//! Image-level backup benchmark: Coffer against restic on the same disk
//! image and the same S3 endpoint.
//!
//! Input: `scripts/bench-image.sh` (run first, cached): a 2 GiB ext4 image
//! holding a Debian OS tree made by debootstrap, and a copy of it in which
//! 1 % of the 512 KiB blocks changed.
//!
//! Each repetition, for each tool, on a fresh moto (our patched launcher,
//! started by the test support code), in one bucket:
//! - restic (Debian's): `restic backup --stdin` of the image (full), then of
//!   the changed image (incremental: restic chunks and hashes every byte, as
//!   for any stream), `restic dump` of it back to a file (restore);
//! - Coffer, file source: `coffer backup --file` of the image, then of the
//!   changed image (a file has no changed-block list either: every block is
//!   read and hashed), `coffer restore --to-file`;
//! - Coffer, EBS direct: the image written into an EBS volume of moto, a
//!   snapshot, `coffer backup --snapshot`; the changed blocks written, a
//!   second snapshot, `coffer backup --snapshot` again, which reads only the
//!   blocks `ListChangedBlocks` names, as on AWS.
//!
//! For every step: wall time, peak RSS of the tool's process (VmHWM sampled
//! every 20 ms), its CPU time and moto's meanwhile (on 2 cores the tool and
//! the emulator share the CPU, so wall time measures both), and the bytes
//! stored in the bucket after it. Restores are
//! compared with the image byte for byte (BLAKE3 of both).
//!
//! Run: `cargo bench --locked -p coffer-provider --bench repository`
//! (`COFFER_BENCH_REPS=n`, default 3; `COFFER_BENCH_IMAGE_DIR` for the
//! images, default target/bench-image). Figures go to docs/benchmarks.md.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "measure.rs"]
mod measure;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_repository::blocks::BLOCK_SIZE;
use measure::{HwmSampler, children_cpu, drain, moto_pid, process_cpu};
use support::Moto;

const BUCKET: &str = "bench";
const PASSWORD: &str = "bench password, not a secret";
const BLOCK: usize = BLOCK_SIZE as usize;

/// One step's figures.
#[derive(Debug, Clone, Copy)]
struct Step {
    wall: Duration,
    peak_rss_kib: u64,
    /// CPU time (user + system) of the tool's process.
    cpu: Duration,
    /// CPU time moto spent meanwhile (answering the tool).
    emulator_cpu: Duration,
    /// Bytes in the bucket after the step.
    stored: u64,
}

/// Runs `command` to completion (stdout into `to_file` when given, else
/// returned), sampling its peak RSS and CPU time and moto's; panics with
/// its output when it fails.
fn measured_with(moto: &Moto, mut command: Command, to_file: Option<&Path>, what: &str) -> (String, Step) {
    match to_file {
        Some(path) => command.stdout(File::create(path).unwrap()),
        None => command.stdout(Stdio::piped()),
    };
    command.stderr(Stdio::piped());
    let emulator = moto_pid(moto.port());
    let emulator_before = emulator.and_then(process_cpu).unwrap_or_default();
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = child.stdout.take().map(drain);
    let stderr = drain(child.stderr.take().unwrap());
    let sampler = HwmSampler::start(child.id());
    let status = child.wait().unwrap();
    let wall = started.elapsed();
    let peak_rss_kib = sampler.finish();
    let cpu = children_cpu().saturating_sub(cpu_before);
    let emulator_cpu = emulator.and_then(process_cpu).unwrap_or_default().saturating_sub(emulator_before);
    let (stdout, stderr) = (stdout.map(|s| s.join().unwrap()).unwrap_or_default(), stderr.join().unwrap());
    assert!(status.success(), "{what} failed ({status}):\n{stdout}\n{stderr}");
    (stdout, Step { wall, peak_rss_kib, cpu, emulator_cpu, stored: stored_bytes(moto) })
}

fn measured(moto: &Moto, command: Command, what: &str) -> (String, Step) {
    measured_with(moto, command, None, what)
}

fn blake3_of(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path).unwrap()).unwrap();
    hasher.finalize()
}

fn stored_bytes(moto: &Moto) -> u64 {
    support::block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        let mut total = 0u64;
        let mut pages = s3.list_objects_v2().bucket(BUCKET).into_paginator().send();
        while let Some(page) = pages.next().await {
            total += page.unwrap().contents().iter().map(|o| o.size().unwrap_or(0) as u64).sum::<u64>();
        }
        total
    })
}

fn fresh_moto() -> Moto {
    let moto = Moto::start();
    support::block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    });
    moto
}

/// full, incremental, restore
type Run = [Step; 3];

// ------------------------------------------------------------------ restic

fn restic(moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new("restic");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RESTIC_REPOSITORY", format!("s3:{}/{BUCKET}/restic", moto.endpoint))
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("RESTIC_CACHE_DIR", std::env::temp_dir().join(format!("coffer-bench-restic-cache-{}", moto.port())))
        .args(args);
    command
}

fn run_restic(images: &Images, scratch: &Path) -> Run {
    let moto = fresh_moto();
    measured(&moto, restic(&moto, &["init"]), "restic init");
    let backup = |image: &Path| {
        let mut command = restic(&moto, &["backup", "--stdin", "--stdin-filename", "disk.img", "--quiet"]);
        command.stdin(File::open(image).unwrap());
        measured(&moto, command, "restic backup").1
    };
    let full = backup(&images.disk);
    let incremental = backup(&images.changed);
    let out = scratch.join("restic-restored.img");
    let (_, restore) = measured_with(&moto, restic(&moto, &["dump", "latest", "disk.img"]), Some(&out), "restic dump");
    assert_eq!(blake3_of(&out), images.changed_hash, "restic dump restored the changed image");
    std::fs::remove_file(&out).unwrap();
    [full, incremental, restore]
}

// ------------------------------------------------------------------ coffer

fn coffer(moto: &Moto, args: &[&str]) -> Command {
    let mut command = support::estate::coffer_command(&moto.endpoint);
    command.env("COFFER_REPOSITORY_PASSWORD", PASSWORD).args(args);
    command
}

const REPOSITORY: &str = "s3://bench/coffer";

fn coffer_backup(moto: &Moto, source: &[&str]) -> (serde_json::Value, Step) {
    let mut args = vec!["backup", "--repository", REPOSITORY, "--json"];
    args.extend_from_slice(source);
    let (stdout, step) = measured(moto, coffer(moto, &args), "coffer backup");
    (serde_json::from_str(&stdout).unwrap(), step)
}

fn coffer_restore(moto: &Moto, point: &serde_json::Value, out: &Path, expected: blake3::Hash) -> Step {
    let args = [
        "restore",
        "--repository",
        REPOSITORY,
        "--point",
        point["id"].as_str().unwrap(),
        "--to-file",
        out.to_str().unwrap(),
    ];
    let (_, step) = measured(moto, coffer(moto, &args), "coffer restore");
    assert_eq!(blake3_of(out), expected, "coffer restored the image byte for byte");
    std::fs::remove_file(out).unwrap();
    step
}

fn run_coffer_file(images: &Images, scratch: &Path) -> Run {
    let moto = fresh_moto();
    measured(&moto, coffer(&moto, &["repo", "init", "--repository", REPOSITORY]), "coffer repo init");
    let (_, full) = coffer_backup(&moto, &["--file", images.disk.to_str().unwrap(), "--name", "disk.img"]);
    let (point, incremental) =
        coffer_backup(&moto, &["--file", images.changed.to_str().unwrap(), "--name", "disk.img"]);
    assert_eq!(point["stats"]["incremental"], false, "a file source reads every block");
    let restore = coffer_restore(&moto, &point, &scratch.join("coffer-restored.img"), images.changed_hash);
    [full, incremental, restore]
}

/// Writes the blocks of `image` that differ from `before` (all non-zero
/// blocks when there is no `before`) into `volume_id`, through our moto
/// launcher's volume-contents endpoint (as an instance writing its disk).
fn write_volume(moto: &Moto, volume_id: &str, image: &Path, before: Option<&Path>) -> usize {
    let mut image = File::open(image).unwrap();
    let mut before = before.map(|p| File::open(p).unwrap());
    let (mut block, mut old) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    let mut written = 0;
    for index in 0.. {
        let n = read_block(&mut image, &mut block);
        if n == 0 {
            break;
        }
        let changed = match &mut before {
            Some(f) => {
                read_block(f, &mut old);
                old != block
            }
            None => block.iter().any(|&b| b != 0),
        };
        if changed {
            if block.iter().all(|&b| b == 0) {
                support::estate::zero_volume_block(moto.port(), volume_id, index);
            } else {
                support::estate::write_volume_block(moto.port(), volume_id, index, &block);
            }
            written += 1;
        }
    }
    written
}

fn read_block(file: &mut File, block: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < block.len() {
        match file.read(&mut block[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    block[filled..].fill(0);
    filled
}

fn run_coffer_ebs(images: &Images, scratch: &Path) -> Run {
    let moto = fresh_moto();
    measured(&moto, coffer(&moto, &["repo", "init", "--repository", REPOSITORY]), "coffer repo init");
    let ec2 = support::block_on(async { aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await) });
    let gib = (std::fs::metadata(&images.disk).unwrap().len() >> 30).max(1) as i32;
    let volume = support::block_on(ec2.create_volume().availability_zone("us-east-1a").size(gib).send())
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let snapshot = |volume: &str| {
        support::block_on(ec2.create_snapshot().volume_id(volume).send()).unwrap().snapshot_id().unwrap().to_string()
    };
    write_volume(&moto, &volume, &images.disk, None);
    let first = snapshot(&volume);
    let (_, full) = coffer_backup(&moto, &["--snapshot", &first]);
    let changed = write_volume(&moto, &volume, &images.changed, Some(&images.disk));
    let second = snapshot(&volume);
    let (point, incremental) = coffer_backup(&moto, &["--snapshot", &second]);
    assert_eq!(point["stats"]["incremental"], true, "{point:#}");
    assert_eq!(
        point["stats"]["blocks_read"].as_u64(),
        Some(changed as u64),
        "only the changed blocks were read: {point:#}"
    );
    let restore = coffer_restore(&moto, &point, &scratch.join("coffer-ebs-restored.img"), images.changed_hash);
    [full, incremental, restore]
}

// ------------------------------------------------------------------ report

struct Images {
    disk: PathBuf,
    changed: PathBuf,
    size: u64,
    changed_hash: blake3::Hash,
}

fn images() -> Images {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::var_os("COFFER_BENCH_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-image"));
    let status =
        Command::new("bash").arg(root.join("scripts/bench-image.sh")).arg(&dir).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "scripts/bench-image.sh failed");
    let (disk, changed) = (dir.join("disk.img"), dir.join("disk-changed.img"));
    Images { size: std::fs::metadata(&disk).unwrap().len(), changed_hash: blake3_of(&changed), disk, changed }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] }
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let reps: usize = std::env::var("COFFER_BENCH_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let images = images();
    let scratch = tempfile::tempdir().unwrap();
    let restic_version =
        String::from_utf8_lossy(&Command::new("restic").arg("version").output().unwrap().stdout).trim().to_string();
    println!(
        "image {} ({:.0} MiB), changed copy {}; {restic_version}; {reps} repetition(s), fresh moto per tool and repetition",
        images.disk.display(),
        images.size as f64 / MIB,
        images.changed.display()
    );

    type Runner = fn(&Images, &Path) -> Run;
    let tools: [(&str, Runner); 3] =
        [("restic", run_restic), ("coffer (file)", run_coffer_file), ("coffer (EBS direct)", run_coffer_ebs)];
    let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for rep in 1..=reps {
        // Alternate the order so drift in the machine's speed spreads evenly.
        let mut order: Vec<_> = tools.iter().collect();
        if rep % 2 == 0 {
            order.reverse();
        }
        for (name, runner) in order {
            let run = runner(&images, scratch.path());
            eprintln!(
                "rep {rep} {name}: full {:.2} s, incremental {:.2} s, restore {:.2} s, stored {:.1} MiB, peak RSS {} MiB",
                run[0].wall.as_secs_f64(),
                run[1].wall.as_secs_f64(),
                run[2].wall.as_secs_f64(),
                run[0].stored as f64 / MIB,
                run.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0) / 1024
            );
            runs.entry(name).or_default().push(run);
        }
    }

    let figure =
        |name: &str, step: usize, f: &dyn Fn(&Step) -> f64| median(runs[name].iter().map(|r| f(&r[step])).collect());
    let secs = |s: &Step| s.wall.as_secs_f64();
    let rss = |s: &Step| s.peak_rss_kib as f64 / 1024.0;
    let throughput = |seconds: f64| images.size as f64 / MIB / seconds;
    println!();
    let cpu = |s: &Step| s.cpu.as_secs_f64();
    let emulator = |s: &Step| s.emulator_cpu.as_secs_f64();
    println!(
        "| | full | full MiB/s | full CPU s (tool / moto) | incremental (1 %) | incr. / full | restore | restore MiB/s | stored after full | stored after incr. | peak RSS (backup / restore) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, _) in &tools {
        let (full, incremental, restore) = (figure(name, 0, &secs), figure(name, 1, &secs), figure(name, 2, &secs));
        println!(
            "| {name} | {full:.2} s | {:.0} | {:.1} / {:.1} | {incremental:.2} s | {:.1} % | {restore:.2} s | {:.0} | {:.1} MiB | {:.1} MiB | {:.0} / {:.0} MiB |",
            throughput(full),
            figure(name, 0, &cpu),
            figure(name, 0, &emulator),
            100.0 * incremental / full,
            throughput(restore),
            figure(name, 0, &|s| s.stored as f64) / MIB,
            figure(name, 1, &|s| s.stored as f64) / MIB,
            figure(name, 0, &rss).max(figure(name, 1, &rss)),
            figure(name, 2, &rss),
        );
    }
    let restic_full = figure("restic", 0, &secs);
    let coffer_full = figure("coffer (file)", 0, &secs);
    let ebs_full = figure("coffer (EBS direct)", 0, &secs);
    let ebs_incremental = figure("coffer (EBS direct)", 1, &secs);
    let peak = tools
        .iter()
        .flat_map(|(n, _)| (0..3).map(move |s| (n, s)))
        .filter(|(n, _)| n.starts_with("coffer"))
        .map(|(n, s)| figure(n, s, &rss))
        .fold(0.0, f64::max);
    println!();
    println!("targets:");
    println!(
        "  full backup ≥ 2× restic's throughput: {:.2}× (file source; CPU time {:.2}× less)",
        restic_full / coffer_full,
        figure("restic", 0, &cpu) / figure("coffer (file)", 0, &cpu)
    );
    println!(
        "  incremental at 1 % < 5 % of the full backup's time: {:.1} % (EBS direct: {:.2} s of {:.2} s); file source {:.1} %",
        100.0 * ebs_incremental / ebs_full,
        ebs_incremental,
        ebs_full,
        100.0 * figure("coffer (file)", 1, &secs) / coffer_full
    );
    println!("  peak RSS < 512 MiB: {peak:.0} MiB");
    println!(
        "  stored bytes ≤ restic's: {:.1} MiB vs {:.1} MiB after both backups",
        figure("coffer (file)", 1, &|s| s.stored as f64) / MIB,
        figure("restic", 1, &|s| s.stored as f64) / MIB
    );
}
