//! `coffer repo`, `coffer backup` and `coffer restore` as a user runs them:
//! the real binary against a repository in moto's S3. A backup killed at
//! random points leaves a repository that `check` passes and the next backup
//! completes; damage is named and fails `check`; restores are byte-identical.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_repository::blocks::BLOCK_SIZE;

use crate::support::estate::coffer_command;
use crate::support::{Moto, block_on};

pub(super) const PASSWORD: &str = "correct horse battery staple";
pub(super) const BLOCK: usize = BLOCK_SIZE as usize;

pub(super) fn coffer(moto: &Moto, args: &[&str]) -> Command {
    let mut command = coffer_command(&moto.endpoint);
    command.env("COFFER_REPOSITORY_PASSWORD", PASSWORD).args(args);
    command
}

/// Runs to completion: (exit code, stdout, stderr).
pub(super) fn run(mut command: Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(super) fn run_ok(command: Command) -> String {
    let shown = format!("{command:?}");
    let (code, stdout, stderr) = run(command);
    assert_eq!(code, 0, "{shown}\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

pub(super) fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A bucket and an initialised password repository in it; returns its location.
pub(super) fn repository(moto: &Moto, bucket: &str) -> String {
    block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    });
    let location = format!("s3://{bucket}/repo");
    run_ok(coffer(moto, &["repo", "init", "--repository", &location]));
    location
}

/// Deterministic incompressible bytes (BLAKE3's output stream of `seed`).
pub(super) fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut bytes);
    bytes
}

/// A disk image of `blocks` blocks: every fourth block zero, every fourth a
/// compressible pattern, the rest incompressible bytes of `seed`.
pub(super) fn image(seed: &str, blocks: usize) -> Vec<u8> {
    let mut bytes = noise(seed, blocks * BLOCK);
    for (index, block) in bytes.chunks_mut(BLOCK).enumerate() {
        match index % 4 {
            0 => block.fill(0),
            1 => block.iter_mut().enumerate().for_each(|(i, b)| *b = (i % 97) as u8 ^ index as u8),
            _ => {}
        }
    }
    bytes
}

pub(super) fn check_passes(moto: &Moto, location: &str, read_data: bool) -> serde_json::Value {
    let mut args = vec!["repo", "check", "--repository", location, "--json"];
    if read_data {
        args.push("--read-data");
    }
    let (code, stdout, stderr) = run(coffer(moto, &args));
    let report = json(&stdout);
    assert_eq!(code, 0, "check failed: {report:#}\n{stderr}");
    assert_eq!(report["damage"], serde_json::json!([]));
    report
}

pub(super) fn restore_to_file(moto: &Moto, location: &str, point: &str, path: &Path) -> Vec<u8> {
    run_ok(coffer(moto, &["restore", "--repository", location, "--point", point, "--to-file", path.to_str().unwrap()]));
    std::fs::read(path).unwrap()
}

/// splitmix64: the test's own reproducible randomness (the seed is printed).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn a_backup_killed_at_random_points_leaves_a_repository_check_passes_and_the_next_backup_completes() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let location = repository(&moto, "crash");
    let disk = dir.path().join("disk.img");
    let args = ["backup", "--repository", &location, "--file", disk.to_str().unwrap(), "--name", "disk", "--json"];

    // 160 blocks (80 MiB, ~40 MiB incompressible): more than one 32 MiB
    // pack, each large enough to go up as a multipart upload.
    const BLOCKS: usize = 160;
    std::fs::write(&disk, image("base", BLOCKS)).unwrap();
    let started = Instant::now();
    let first = json(&run_ok(coffer(&moto, &args)));
    let full = started.elapsed();

    let seed = std::env::var("COFFER_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed {seed} (COFFER_CRASH_SEED={seed} repeats it); an uninterrupted backup took {full:?}");
    let mut random = Random(seed);
    let mut killed = 0;
    for attempt in 0..12 {
        // Each attempt has new data to write: a fresh image, so the kill can
        // land while packs upload, between packs and index, or index and
        // manifest, as well as before anything was written.
        std::fs::write(&disk, image(&format!("attempt {attempt}"), BLOCKS)).unwrap();
        // Within an uninterrupted backup's time, so most attempts die
        // mid-way wherever that is; a few finish (timings vary), which is
        // fine too.
        let delay = Duration::from_millis(random.next() % (full.as_millis() as u64).max(1));
        let mut child = coffer(&moto, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let report = check_passes(&moto, &location, false);
        assert!(report["restore_points"].as_u64().unwrap() >= 1, "{report:#}");
    }
    assert!(killed >= 4, "attempts should have been killed mid-way (only {killed} of 12 were)");

    // The next backup completes and restores byte for byte, the first
    // point is intact, and reading every pack finds no damage.
    let last_image = image("after the crashes", BLOCKS);
    std::fs::write(&disk, &last_image).unwrap();
    let last = json(&run_ok(coffer(&moto, &args)));
    let restored = restore_to_file(&moto, &location, last["id"].as_str().unwrap(), &dir.path().join("last.img"));
    assert!(restored == last_image, "the backup after the crashes restores byte for byte");
    let restored = restore_to_file(&moto, &location, first["id"].as_str().unwrap(), &dir.path().join("first.img"));
    assert!(restored == image("base", BLOCKS), "the first point restores byte for byte");
    check_passes(&moto, &location, true);

    // The killed processes' locks do not hold prune off (same host, process
    // gone: without that, prune would refuse for 30 minutes) and are
    // cleared; what they left is marked, then deleted by the next prune.
    let prune =
        || json(&run_ok(coffer(&moto, &["repo", "prune", "--repository", &location, "--grace", "0s", "--json"])));
    let first_prune = prune();
    let second_prune = prune();
    assert_eq!(second_prune["deleted"], first_prune["marked"], "{first_prune:#}\n{second_prune:#}");
    let locks = block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        s3.list_objects_v2().bucket("crash").prefix("repo/locks/").send().await.unwrap().key_count().unwrap_or(0)
    });
    assert_eq!(locks, 0, "the killed backups' locks were removed");
    check_passes(&moto, &location, true);
    let restored = restore_to_file(&moto, &location, last["id"].as_str().unwrap(), &dir.path().join("pruned.img"));
    assert!(restored == last_image, "the newest point restores byte for byte after the prune");
}

#[test]
fn repo_commands_restore_byte_for_byte_and_name_damage() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let location = repository(&moto, "vault");
    let disk = dir.path().join("disk.img");

    let v1 = image("v1", 24);
    std::fs::write(&disk, &v1).unwrap();
    let backup = |name: &str| {
        json(&run_ok(coffer(
            &moto,
            &["backup", "--repository", &location, "--file", disk.to_str().unwrap(), "--name", name, "--json"],
        )))
    };
    let first = backup("web-root");
    assert_eq!(first["stats"]["incremental"], false);
    assert_eq!(first["stats"]["blocks"], 18, "zero blocks are omitted");

    // Change two blocks: the incremental point writes only them.
    let mut v2 = v1.clone();
    v2[3 * BLOCK..4 * BLOCK].copy_from_slice(&noise("changed 3", BLOCK));
    v2[7 * BLOCK..8 * BLOCK].copy_from_slice(&noise("changed 7", BLOCK));
    std::fs::write(&disk, &v2).unwrap();
    let second = backup("web-root");
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["stats"]["new_blobs"], 2);

    // The same image under another name costs nothing new (dedup).
    let copy = backup("web-root-copy");
    assert_eq!(copy["stats"]["new_blobs"], 0);

    let points = json(&run_ok(coffer(&moto, &["repo", "points", "--repository", &location, "--json"])));
    assert_eq!(points.as_array().unwrap().len(), 3);
    assert_eq!(restore_to_file(&moto, &location, first["id"].as_str().unwrap(), &dir.path().join("1.img")), v1);
    assert_eq!(restore_to_file(&moto, &location, second["id"].as_str().unwrap(), &dir.path().join("2.img")), v2);

    // A restore never overwrites a file.
    let (code, _, stderr) = run(coffer(
        &moto,
        &[
            "restore",
            "--repository",
            &location,
            "--point",
            first["id"].as_str().unwrap(),
            "--to-file",
            dir.path().join("2.img").to_str().unwrap(),
        ],
    ));
    assert_eq!(code, 1);
    assert!(stderr.contains("2.img") && stderr.contains("exists"), "{stderr}");

    // A wrong password is told apart from damage.
    let mut wrong = coffer(&moto, &["repo", "points", "--repository", &location]);
    wrong.env("COFFER_REPOSITORY_PASSWORD", "wrong");
    let (code, _, stderr) = run(wrong);
    assert_eq!(code, 1);
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));

    // Flip one byte in the middle of a pack: check passes without reading
    // data (the pack is there, with its size), --read-data names the pack
    // and exits 1, and a restore of a point using it fails naming it too.
    let pack = block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        let listed = s3.list_objects_v2().bucket("vault").prefix("repo/data/").send().await.unwrap();
        let key = listed.contents()[0].key().unwrap().to_string();
        let mut body =
            s3.get_object().bucket("vault").key(&key).send().await.unwrap().body.collect().await.unwrap().to_vec();
        let middle = body.len() / 3;
        body[middle] ^= 0x40;
        s3.put_object().bucket("vault").key(&key).body(body.into()).send().await.unwrap();
        key.trim_start_matches("repo/").to_string()
    });
    check_passes(&moto, &location, false);
    let (code, stdout, _) = run(coffer(&moto, &["repo", "check", "--repository", &location, "--read-data"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&format!("damaged: {pack}")) && stdout.contains("the repository is damaged"), "{stdout}");
}

/// `AWS_ENDPOINT_URL_S3` wins over `AWS_ENDPOINT_URL` for S3, as it does for
/// every AWS SDK: here the repository lives in a second S3 endpoint while
/// STS (the account check every command makes) stays on the first.
#[test]
fn a_service_specific_endpoint_variable_sends_s3_to_its_own_endpoint() {
    let everything = Moto::start();
    let storage = Moto::start();
    let (in_storage, in_everything) = block_on(async {
        let storage_s3 = aws_sdk_s3::Client::new(&storage.sdk_config("us-east-1").await);
        storage_s3.create_bucket().bucket("repos").send().await.unwrap();
        (storage_s3, aws_sdk_s3::Client::new(&everything.sdk_config("us-east-1").await))
    });
    let mut init = coffer(&everything, &["repo", "init", "--repository", "s3://repos/r"]);
    init.env("AWS_ENDPOINT_URL_S3", &storage.endpoint);
    let said = run_ok(init);
    assert!(said.contains("s3://repos/r"), "{said}");
    block_on(async {
        let config = in_storage.head_object().bucket("repos").key("r/config").send().await;
        assert!(config.is_ok(), "the repository config is in the S3 endpoint AWS_ENDPOINT_URL_S3 names: {config:?}");
        let buckets = in_everything.list_buckets().send().await.unwrap();
        assert!(buckets.buckets().is_empty(), "nothing went to the shared endpoint's S3: {:?}", buckets.buckets());
    });
}
