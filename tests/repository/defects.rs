//! Regression tests for issue 21: defects found by attacking the `coffer`
//! binary as a hostile user, a flaky network and a crowded host would.
//! Each test is named after its defect and drives the real binary; the
//! flaky network is `support::fault_proxy` between coffer and moto.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::{BLOCK, PASSWORD, check_passes, coffer, image, json, repository, restore_to_file, run, run_ok};
use crate::support::estate::coffer_command;
use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
use crate::support::{Moto, block_on};

/// `coffer` against another endpoint (the fault proxy), with the password.
fn coffer_via(endpoint: &str, args: &[&str]) -> Command {
    let mut command = coffer_command(endpoint);
    command.env("COFFER_REPOSITORY_PASSWORD", PASSWORD).args(args);
    command
}

/// Spawns with stdout and stderr captured.
trait SpawnPiped {
    fn spawn_piped(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn spawn_piped(&mut self) -> std::process::Child {
        self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }
}

/// Polls `done` every 50 ms; panics saying `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keys_under(moto: &Moto, bucket: &str, prefix: &str) -> Vec<String> {
    block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
        listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
    })
}

fn backup_file(moto: &Moto, location: &str, path: &Path, name: &str) -> serde_json::Value {
    json(&run_ok(coffer(
        moto,
        &["backup", "--repository", location, "--file", path.to_str().unwrap(), "--name", name, "--json"],
    )))
}

/// Runs `command` as the unprivileged user `nobody` (setpriv).
fn as_nobody(program: &str, args: &[&str]) {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", program])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "setpriv {program} {args:?}: {status}");
}

#[test]
fn restore_to_file_overwrites_nothing_and_follows_no_link_another_user_planted() {
    let moto = Moto::start();
    let location = repository(&moto, "planted");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let disk = dir.path().join("disk.img");
    let bytes = image("planted", 6);
    std::fs::write(&disk, &bytes).unwrap();
    let point = backup_file(&moto, &location, &disk, "disk")["id"].as_str().unwrap().to_string();

    // A root-owned secret, and a directory another user can write to.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"root's secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();

    // nobody plants a symlink where the partial file used to be made…
    let through_link = shared.join("a.img");
    as_nobody("ln", &["-s", secret.to_str().unwrap(), shared.join("a.img.coffer-partial").to_str().unwrap()]);
    assert_eq!(restore_to_file(&moto, &location, &point, &through_link), bytes);
    assert_eq!(std::fs::read(&secret).unwrap(), b"root's secret", "written through the planted link");
    let made = std::fs::metadata(&through_link).unwrap();
    assert_eq!((made.uid(), made.mode() & 0o777), (0, 0o600), "the restored image is root's and private");

    // …and a file of its own there, hoping to receive root's disk image.
    let into_file = shared.join("b.img");
    as_nobody("touch", &[shared.join("b.img.coffer-partial").to_str().unwrap()]);
    assert_eq!(restore_to_file(&moto, &location, &point, &into_file), bytes);
    assert_eq!(
        std::fs::metadata(shared.join("b.img.coffer-partial")).unwrap().len(),
        0,
        "the planted file received data"
    );
    assert_eq!(std::fs::metadata(&into_file).unwrap().uid(), 0);

    // A dangling symlink at the target is something there: refused.
    let dangling = shared.join("c.img");
    as_nobody("ln", &["-s", dir.path().join("made-by-root").to_str().unwrap(), dangling.to_str().unwrap()]);
    let (code, _, stderr) = run(coffer(
        &moto,
        &["restore", "--repository", &location, "--point", &point, "--to-file", dangling.to_str().unwrap()],
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already exists; restore never overwrites a file"), "{stderr}");
    assert!(!dir.path().join("made-by-root").exists(), "the link was followed");
    let partials: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("coffer-partial-"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    assert!(keys_under(&moto, "planted", "repo/locks/").is_empty());
}

#[test]
fn a_prune_in_another_pid_namespace_leaves_a_running_backups_lock_alone() {
    let moto = Moto::start();
    let location = repository(&moto, "pidns");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, image("pidns", 8)).unwrap();

    // The backup's pack upload is held back for a while: it holds its
    // shared lock all that time.
    let proxy = FaultProxy::start(&moto);
    let held =
        proxy.add(Rule::new(Fault::Delay(Duration::from_secs(8))).method("PUT").path_contains("/repo/data/").times(1));
    let backup = coffer_via(
        &proxy.endpoint,
        &["backup", "--repository", &location, "--file", disk.to_str().unwrap(), "--name", "disk", "--json"],
    )
    .spawn_piped();
    wait_until(Duration::from_secs(30), "the backup never took its lock", || {
        !keys_under(&moto, "pidns", "repo/locks/shared-").is_empty() && proxy.injected(held) > 0
    });

    // A prune in a PID namespace of its own, with the same host name: the
    // backup's pid is not in its /proc, which proves nothing.
    let mut prune = Command::new("unshare");
    prune.args([
        "--pid",
        "--fork",
        "--mount-proc",
        env!("CARGO_BIN_EXE_coffer"),
        "repo",
        "prune",
        "--repository",
        &location,
        "--grace",
        "0s",
    ]);
    for (key, value) in coffer(&moto, &[]).get_envs() {
        prune.env(key, value.unwrap_or_default());
    }
    let (code, _, stderr) = run(prune);
    assert_eq!(code, 1, "prune must refuse while the backup runs: {stderr}");
    assert!(stderr.contains("the repository is locked by backup"), "{stderr}");

    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_passes(&moto, &location, true);
}

#[test]
fn a_lost_response_to_a_create_only_write_is_not_reported_as_already_exists() {
    let moto = Moto::start();
    block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        s3.create_bucket().bucket("lost").send().await.unwrap();
    });
    let proxy = FaultProxy::start(&moto);
    let location = "s3://lost/repo";

    // S3 applies the config write; its answer never arrives; the retry finds it.
    let config = proxy.add(
        Rule::new(Fault::DropResponse)
            .method("PUT")
            .path_contains("/repo/config")
            .with_header("if-none-match")
            .times(1),
    );
    let out = run_ok(coffer_via(&proxy.endpoint, &["repo", "init", "--repository", location]));
    assert!(out.contains("created repository"), "{out}");
    assert_eq!(proxy.injected(config), 1, "the fault was not injected");

    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let bytes = image("lost", 4);
    std::fs::write(&disk, &bytes).unwrap();
    let manifest = proxy.add(Rule::new(Fault::DropResponse).method("PUT").path_contains("/repo/manifests/").times(1));
    let point = json(&run_ok(coffer_via(
        &proxy.endpoint,
        &["backup", "--repository", location, "--file", disk.to_str().unwrap(), "--json"],
    )));
    assert_eq!(proxy.injected(manifest), 1, "the fault was not injected");

    let points = json(&run_ok(coffer(&moto, &["repo", "points", "--repository", location, "--json"])));
    assert_eq!(points.as_array().unwrap().len(), 1, "one backup, one point: {points:#}");
    assert_eq!(points[0]["id"], point["id"]);
    assert_eq!(restore_to_file(&moto, location, point["id"].as_str().unwrap(), &dir.path().join("back.img")), bytes);
}

#[test]
fn a_body_cut_mid_stream_is_resumed_by_restore_backup_and_check() {
    let moto = Moto::start();
    let location = repository(&moto, "cut");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let bytes = image("cut", 48);
    std::fs::write(&disk, &bytes).unwrap();
    let first = backup_file(&moto, &location, &disk, "disk");

    // Every second GET of a body over 1,000 bytes loses it after 1,000:
    // pack ranges, index files and manifests alike.
    let proxy = FaultProxy::start(&moto);
    let cut = proxy.add(Rule::new(Fault::CutBody { after: 1000 }).method("GET").path_contains("/repo/").one_in(2));
    let restored = dir.path().join("restored.img");
    run_ok(coffer_via(
        &proxy.endpoint,
        &[
            "restore",
            "--repository",
            &location,
            "--point",
            first["id"].as_str().unwrap(),
            "--to-file",
            restored.to_str().unwrap(),
            "--concurrency",
            "4",
        ],
    ));
    assert_eq!(std::fs::read(&restored).unwrap(), bytes, "restored byte for byte");
    let after_restore = proxy.injected(cut);
    assert!(after_restore > 0, "no body was cut");

    let mut changed = bytes.clone();
    changed[5 * BLOCK..6 * BLOCK].fill(0x5a);
    std::fs::write(&disk, &changed).unwrap();
    let second = json(&run_ok(coffer_via(
        &proxy.endpoint,
        &["backup", "--repository", &location, "--file", disk.to_str().unwrap(), "--name", "disk", "--json"],
    )));
    assert_eq!(second["parent"], first["id"]);
    let report = json(&run_ok(coffer_via(
        &proxy.endpoint,
        &["repo", "check", "--repository", &location, "--read-data", "--json"],
    )));
    assert_eq!(report["damage"], serde_json::json!([]));
    assert!(proxy.injected(cut) > after_restore, "backup and check saw no cut body");
}

#[test]
fn one_damaged_index_file_leaves_intact_points_restorable_and_repair_index_rebuilds_it() {
    let moto = Moto::start();
    let location = repository(&moto, "index");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let (bytes_a, bytes_b) = (image("index-a", 4), image("index-b", 4));
    std::fs::write(&a, &bytes_a).unwrap();
    let point_a = backup_file(&moto, &location, &a, "a")["id"].as_str().unwrap().to_string();
    let before = keys_under(&moto, "index", "repo/index/");
    std::fs::write(&b, &bytes_b).unwrap();
    let point_b = backup_file(&moto, &location, &b, "b")["id"].as_str().unwrap().to_string();
    let damaged =
        keys_under(&moto, "index", "repo/index/").into_iter().find(|k| !before.contains(k)).expect("b's index file");
    block_on(async {
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        let body =
            s3.get_object().bucket("index").key(&damaged).send().await.unwrap().body.collect().await.unwrap().to_vec();
        s3.put_object()
            .bucket("index")
            .key(&damaged)
            .body(body[..body.len() / 2].to_vec().into())
            .send()
            .await
            .unwrap();
    });

    // A's blobs are all in the intact index: it restores.
    assert_eq!(restore_to_file(&moto, &location, &point_a, &dir.path().join("a-back.img")), bytes_a);
    // B's are not: the error names the damaged file and the way out.
    let (code, _, stderr) = run(coffer(
        &moto,
        &[
            "restore",
            "--repository",
            &location,
            "--point",
            &point_b,
            "--to-file",
            dir.path().join("b-back.img").to_str().unwrap(),
        ],
    ));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(damaged.trim_start_matches("repo/")) && stderr.contains("coffer repo repair-index"),
        "{stderr}"
    );
    // Prune deletes nothing; check names the file and the way out.
    let (code, _, stderr) = run(coffer(&moto, &["repo", "prune", "--repository", &location, "--grace", "0s"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("prune deletes nothing while an index file is unreadable"), "{stderr}");
    let (code, stdout, _) = run(coffer(&moto, &["repo", "check", "--repository", &location]));
    assert_eq!(code, 1);
    assert!(stdout.contains("coffer repo repair-index"), "{stdout}");
    // A backup still works meanwhile.
    backup_file(&moto, &location, &a, "a");

    let repaired = json(&run_ok(coffer(&moto, &["repo", "repair-index", "--repository", &location, "--json"])));
    assert_eq!(repaired["removed_index_files"], serde_json::json!([damaged.trim_start_matches("repo/")]));
    assert!(repaired["packs_indexed"].as_u64().unwrap() >= 1, "{repaired:#}");
    assert_eq!(restore_to_file(&moto, &location, &point_b, &dir.path().join("b-back.img")), bytes_b);
    check_passes(&moto, &location, true);
}

#[test]
fn backup_of_a_directory_fifo_or_character_device_is_refused_before_any_lock() {
    let moto = Moto::start();
    let location = repository(&moto, "kinds");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (path, what) in [
        (dir.path().to_path_buf(), "is a directory"),
        (fifo, "is a FIFO"),
        ("/dev/zero".into(), "is a character device"),
    ] {
        let mut child =
            coffer(&moto, &["backup", "--repository", &location, "--file", path.to_str().unwrap()]).spawn_piped();
        let hangs = format!("backup --file {} hangs", path.display());
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(Duration::from_secs(60), &hangs, || child.try_wait().unwrap().is_some())
        }));
        if let Err(panic) = finished {
            let _ = child.kill();
            std::panic::resume_unwind(panic);
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.contains(what) && stderr.contains("regular file or a block device"), "{stderr}");
    }
    assert!(keys_under(&moto, "kinds", "repo/locks/").is_empty(), "a lock was taken");
    assert!(keys_under(&moto, "kinds", "repo/manifests/").is_empty(), "a point was made");
}

#[test]
fn durations_that_overflow_are_refused_not_wrapped_to_zero() {
    let moto = Moto::start();
    let location = repository(&moto, "grace");
    for (flag, command) in [
        ("--grace", vec!["repo", "prune", "--repository", &location]),
        ("--thaw-timeout", vec!["restore", "--repository", &location, "--point", "p", "--to-file", "/nonexistent/x"]),
    ] {
        let mut args = command.clone();
        args.extend([flag, "1152921504606846976h"]);
        let (code, _, stderr) = run(coffer(&moto, &args));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains("is too long: at most 87600h"), "{stderr}");
    }
    let (code, _, stderr) = run(coffer(&moto, &["run", "--policy", "p", "--wait-timeout", "99999999999999999999s"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("is too long"), "{stderr}");
    // The provider's grammar, now the CLI's too.
    let out = run_ok(coffer(&moto, &["repo", "prune", "--repository", &location, "--grace", "1h30m", "--json"]));
    assert_eq!(json(&out)["deleted"], 0);
}

#[test]
fn rust_log_trace_never_prints_the_session_token() {
    let moto = Moto::start();
    let location = repository(&moto, "tokens");
    let token = "FQoGZXIvYXdzEXAMPLEsessiontokenthatmustnotleak";
    let mut command = coffer(&moto, &["repo", "points", "--repository", &location]);
    command.env("RUST_LOG", "trace").env("AWS_SESSION_TOKEN", token);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(token), "the session token reached the log");
    assert!(!stderr.to_ascii_lowercase().contains("x-amz-security-token"), "a signed request reached the log");
}

#[test]
fn rough_edges_sessions_of_a_missing_policy_and_an_s3_location_without_bucket() {
    let moto = Moto::start();
    let (code, _, stderr) = run(coffer(&moto, &["sessions", "--policy", "no-such-policy"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no-such-policy"), "{stderr}");
    let (code, _, stderr) = run(coffer(&moto, &["repo", "points", "--repository", "s3://"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("--repository s3://: name the bucket, as s3://bucket/prefix"), "{stderr}");
    assert!(!stderr.contains("interceptor"), "{stderr}");
}

#[test]
fn a_restore_stopped_by_sigterm_leaves_no_partial_file_and_no_lock() {
    let moto = Moto::start();
    let location = repository(&moto, "sigterm");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, image("sigterm", 8)).unwrap();
    let point = backup_file(&moto, &location, &disk, "disk")["id"].as_str().unwrap().to_string();

    let proxy = FaultProxy::start(&moto);
    let held = proxy.add(Rule::new(Fault::Delay(Duration::from_secs(20))).method("GET").path_contains("/repo/data/"));
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("restored.img");
    let mut restore = coffer_via(
        &proxy.endpoint,
        &["restore", "--repository", &location, "--point", &point, "--to-file", target.to_str().unwrap()],
    )
    .spawn_piped();
    wait_until(Duration::from_secs(30), "the restore never read a pack", || proxy.matched(held) > 0);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1, "the partial file is being written");
    assert!(Command::new("kill").args(["-TERM", &restore.id().to_string()]).status().unwrap().success());
    wait_until(Duration::from_secs(15), "SIGTERM did not stop the restore", || restore.try_wait().unwrap().is_some());
    let out = restore.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a partial file was left");
    assert!(keys_under(&moto, "sigterm", "repo/locks/").is_empty(), "the lock was left");
}

#[test]
fn a_backup_whose_lock_cannot_be_removed_still_prints_the_point_it_made() {
    let moto = Moto::start();
    let location = repository(&moto, "undeletable");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, image("undeletable", 4)).unwrap();
    let proxy = FaultProxy::start(&moto);
    let refused =
        proxy.add(Rule::new(Fault::Refuse { status: 403 }).method("DELETE").path_contains("/repo/locks/shared-"));
    let (code, stdout, stderr) = run(coffer_via(
        &proxy.endpoint,
        &["backup", "--repository", &location, "--file", disk.to_str().unwrap(), "--json"],
    ));
    assert_eq!(code, 0, "the point was made: {stderr}");
    assert!(proxy.injected(refused) >= 1, "the fault was not injected");
    assert!(stderr.contains("warning: the backup's lock could not be removed"), "{stderr}");
    let point = json(&stdout);
    let points = json(&run_ok(coffer(&moto, &["repo", "points", "--repository", &location, "--json"])));
    assert_eq!(points[0]["id"], point["id"]);
    // The lock left behind is this host's, of a process that is gone: prune need not wait.
    assert_eq!(keys_under(&moto, "undeletable", "repo/locks/shared-").len(), 1);
    run_ok(coffer(&moto, &["repo", "prune", "--repository", &location, "--grace", "0s"]));
}

#[test]
fn restore_into_a_missing_directory_names_the_directory() {
    let moto = Moto::start();
    let location = repository(&moto, "nodir");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, image("nodir", 2)).unwrap();
    let point = backup_file(&moto, &location, &disk, "disk")["id"].as_str().unwrap().to_string();
    let target = dir.path().join("no-such-dir/disk.img");
    let (code, _, stderr) = run(coffer(
        &moto,
        &["restore", "--repository", &location, "--point", &point, "--to-file", target.to_str().unwrap()],
    ));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("the directory {} does not exist", dir.path().join("no-such-dir").display())),
        "{stderr}"
    );
    assert!(!stderr.contains("partial"), "{stderr}");
    assert!(keys_under(&moto, "nodir", "repo/locks/").is_empty(), "the lock was left");
}
