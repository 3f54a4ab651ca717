//! A rule's schedule fired by hand, and the worker it launches booted in a sandbox that
//! looks like an EC2 instance (`support::sandbox`): the real terraform applies the policy,
//! `coffer publish` puts the binary in the catalog, the schedule's RunInstances input goes
//! through the real AWS CLI (botocore checks it against the EC2 service model, as Scheduler's
//! universal target passes it to the EC2 API), and the instance's user data runs as the
//! instance's first boot would, with only IMDS credentials.

use base64::Engine;

use crate::support::aws::{ACCOUNT, Aws, CATALOG_BUCKET};
use crate::support::estate;
use crate::support::sandbox::{Instance, Sandbox};
use crate::support::terraform::oldest_terraform;
use crate::support::tools;
use crate::support::{Moto, Workdir, block_on, provider_binary, provider_block};

/// A snapshot-only policy over instances tagged `Backup = hourly`, due at the top of every
/// hour, so a `--scheduled` run at any time finds the firing of the last hour.
const POLICY: &str = r#"
resource "coffer_worker_configuration" "use1" {
  name             = "use1"
  instance_profile = "coffer-worker"
}

resource "coffer_backup_policy" "prod" {
  name = "prod"
  type = "ec2"
  source {
    regions = ["us-east-1"]
    tags    = { Backup = "hourly" }
  }
  rule {
    name = "hourly"
    cron = "0 * * * *"
    snapshot {
      retain {
        count = 3
      }
    }
  }
  worker_configuration_ids = [coffer_worker_configuration.use1.id]
  scheduler_role_arn       = "arn:aws:iam::123456789012:role/coffer-scheduler"
  max_run_time             = "MAX_RUN_TIME"
}
"#;

/// The environment a worker on AWS does not need and the sandbox does: the emulator's
/// endpoint, and path-style S3 (moto on 127.0.0.1 has no bucket host names).
fn emulator_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![("AWS_ENDPOINT_URL", moto.endpoint.clone()), ("COFFER_S3_USE_PATH_STYLE", "true".into())]
}

/// Boots the fired worker against the emulator and checks that it shut down once.
fn boot_shuts_down(fired: &Fired) -> crate::support::sandbox::Boot {
    let env = emulator_env(&fired.moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let boot = fired.sandbox.boot(&fired.user_data, &env);
    assert_eq!(boot.shutdown_calls, ["-h now"], "the worker shuts down once: {}", boot.describe());
    boot
}

struct Fired {
    sandbox: Sandbox,
    moto: Moto,
    instance_id: String,
    user_data: String,
    _wd: Workdir,
}

/// How a test's worker is set up.
struct Setup {
    publish: bool,
    /// The policy's `max_run_time`.
    max_run_time: &'static str,
    /// The instance profile's role in instance metadata (none: no credentials).
    role: Option<&'static str>,
    /// The rule also backs up into a password repository, whose workers' envelope is
    /// removed after the policy was applied.
    envelope_removed: bool,
    /// The policy covers eu-west-1 too, with a worker configuration there, and its rule backs
    /// up into the `vault` repository (with the workers' envelope).
    two_regions: bool,
}

const NORMAL: Setup = Setup {
    publish: true,
    max_run_time: "2h",
    role: Some("coffer-worker"),
    envelope_removed: false,
    two_regions: false,
};

/// [`image_level_policy`] over us-east-1 and eu-west-1, with a worker configuration in each,
/// and one volume per worker.
fn two_region_policy() -> String {
    image_level_policy()
        .replace("  max_run_time ", "  volumes_per_worker       = 1\n  max_run_time ")
        .replace(
            "resource \"coffer_backup_policy\"",
            "resource \"coffer_worker_configuration\" \"euw1\" {\n  name             = \"euw1\"\n  region           = \"eu-west-1\"\n  \
             instance_profile = \"coffer-worker\"\n}\n\nresource \"coffer_backup_policy\"",
        )
        .replace("regions = [\"us-east-1\"]", "regions = [\"us-east-1\", \"eu-west-1\"]")
        .replace(
            "[coffer_worker_configuration.use1.id]",
            "[coffer_worker_configuration.use1.id, coffer_worker_configuration.euw1.id]",
        )
}

/// A password repository, with the workers' KMS envelope when `worker_key` names a key.
fn repository(worker_key: Option<&str>) -> String {
    let envelope = worker_key.map(|key| format!("worker_kms_key_arn = \"{key}\"")).unwrap_or_default();
    format!(
        "resource \"coffer_repository\" \"vault\" {{\n  name          = \"vault\"\n  bucket        = \"coffer-vault\"\n  \
         create_bucket = true\n  force_destroy = true\n  {envelope}\n  encryption {{\n    password = \"a long enough password\"\n  }}\n}}\n"
    )
}

/// [`POLICY`] whose rule also backs up into the `vault` repository.
fn image_level_policy() -> String {
    POLICY.replace(
        "    snapshot {\n      retain {\n        count = 3\n      }\n    }\n",
        "    snapshot {\n      retain {\n        count = 3\n      }\n    }\n    backup {\n      repository_id = coffer_repository.vault.id\n      retain {\n        count = 3\n      }\n    }\n",
    )
}

/// Applies [`POLICY`], publishes `coffer` when asked, seeds one instance to protect and
/// fires the rule's schedule: RunInstances with the schedule's input, as Scheduler would.
fn fire(setup: Setup) -> Option<Fired> {
    // The worker build, made before the sandbox's namespace, where cargo has no network.
    if setup.publish && nix::unistd::geteuid().is_root() {
        tools::worker_build();
    }
    let sandbox = Sandbox::enter()?;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    block_on(estate::instance(&aws.ec2, &estate::tags(&[("Backup", "hourly")]), 0, None));
    if setup.two_regions {
        let ireland = aws_sdk_ec2::Client::new(&block_on(moto.sdk_config("eu-west-1")));
        for _ in 0..2 {
            block_on(estate::instance(&ireland, &estate::tags(&[("Backup", "hourly")]), 0, None));
        }
    }
    // The workers' instance profile, as the user's IAM configuration makes it (RunInstances
    // refuses a profile that does not exist, and apply checks it).
    for args in [
        &["iam", "create-role", "--role-name", "coffer-worker", "--assume-role-policy-document", "{}"][..],
        &["iam", "create-instance-profile", "--instance-profile-name", "coffer-worker"],
        &[
            "iam",
            "add-role-to-instance-profile",
            "--instance-profile-name",
            "coffer-worker",
            "--role-name",
            "coffer-worker",
        ],
        // The scheduler role, allowed to pass the workers' role (checked at apply).
        &["iam", "create-role", "--role-name", "coffer-scheduler", "--assume-role-policy-document", "{}"],
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "coffer-scheduler",
            "--policy-name",
            "pass-coffer-worker",
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::123456789012:role/coffer-worker"}]}"#,
        ],
    ] {
        let made = sandbox.aws_cli(&moto.endpoint, args);
        assert!(made.status.success(), "{args:?}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let tf = oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let provider = provider_block(&moto, "us-east-1");
    if setup.two_regions {
        let key = aws.kms_key();
        let policy = two_region_policy().replace("MAX_RUN_TIME", setup.max_run_time);
        wd.write("main.tf", &(provider + &repository(Some(&key)) + &policy));
        wd.init();
        // The schedule's worker launches eu-west-1's, passing their role: until the workers'
        // role may pass it (as coffer_iam_policy's worker document allows), apply refuses.
        let refused = wd.try_apply().expect_err("the workers' role may not pass itself yet");
        let refused = refused.split_whitespace().collect::<Vec<_>>().join(" ");
        let role = format!("arn:aws:iam::{ACCOUNT}:role/coffer-worker");
        assert!(
            refused.contains("Error: Workers cannot work: home workers may pass this region's workers' role")
                && refused.contains(&format!(
                    "{role} (the role of the home region's workers) is not allowed iam:PassRole on {role}, so the \
                     schedule's worker could not launch eu-west-1's workers"
                ))
                && refused.contains("worker_configuration_ids"),
            "{refused}"
        );
        let pass_itself = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"iam:PassRole","Resource":"{role}"}}]}}"#
        );
        let granted = sandbox.aws_cli(
            &moto.endpoint,
            &[
                "iam",
                "put-role-policy",
                "--role-name",
                "coffer-worker",
                "--policy-name",
                "pass-coffer-worker",
                "--policy-document",
                &pass_itself,
            ],
        );
        assert!(granted.status.success(), "{}", String::from_utf8_lossy(&granted.stderr));
        wd.apply();
    } else if setup.envelope_removed {
        // Applied as it should be, then the envelope taken off the repository in a later
        // apply that leaves the policy alone: nothing re-checks the policy.
        let key = aws.kms_key();
        let policy = image_level_policy().replace("MAX_RUN_TIME", setup.max_run_time);
        wd.write("main.tf", &(provider.clone() + &repository(Some(&key)) + &policy));
        wd.init();
        wd.apply();
        wd.write("main.tf", &(provider + &repository(None) + &policy));
        wd.apply();
    } else {
        wd.write("main.tf", &(provider + &POLICY.replace("MAX_RUN_TIME", setup.max_run_time)));
        wd.init();
        wd.apply();
    }
    if setup.publish {
        // The worker build, as a release ships it: linked against Amazon Linux 2's glibc.
        let published = estate::coffer_command(&moto.endpoint)
            .arg("publish")
            .arg("--binary")
            .arg(tools::worker_build())
            .output()
            .unwrap();
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    }

    let schedule = aws.schedule("coffer-prod-hourly").expect("the rule's schedule");
    let target = schedule.target().expect("a target");
    assert_eq!(target.arn(), "arn:aws:scheduler:::aws-sdk:ec2:runInstances");
    let input = target.input().expect("the RunInstances input");
    // Scheduler passes Input to the EC2 API as it is, UserData already base64 as the API wants
    // it; botocore base64-encodes UserData itself (its RunInstances handler), so the CLI is
    // given the decoded script and sends the API exactly the Input's value.
    let mut as_cli: serde_json::Value = serde_json::from_str(input).unwrap();
    let encoded = as_cli["UserData"].as_str().expect("the input carries user data").to_string();
    let script = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&encoded).unwrap()).unwrap();
    as_cli["UserData"] = script.into();
    let launched = sandbox.aws_cli(&moto.endpoint, &["ec2", "run-instances", "--cli-input-json", &as_cli.to_string()]);
    assert!(
        launched.status.success(),
        "RunInstances refused the schedule's input: {}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let launched: serde_json::Value = serde_json::from_slice(&launched.stdout).unwrap();
    let instance_id = launched["Instances"][0]["InstanceId"].as_str().unwrap().to_string();
    let associations = sandbox.aws_cli(
        &moto.endpoint,
        &[
            "ec2",
            "describe-iam-instance-profile-associations",
            "--filters",
            &format!("Name=instance-id,Values={instance_id}"),
        ],
    );
    let associations: serde_json::Value = serde_json::from_slice(&associations.stdout).unwrap();
    assert_eq!(
        associations["IamInstanceProfileAssociations"][0]["IamInstanceProfile"]["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:instance-profile/coffer-worker"),
        "the instance profile comes from the launch template: {associations:#}"
    );
    let attribute = sandbox.aws_cli(
        &moto.endpoint,
        &["ec2", "describe-instance-attribute", "--instance-id", &instance_id, "--attribute", "userData"],
    );
    let attribute: serde_json::Value = serde_json::from_slice(&attribute.stdout).unwrap();
    let got = attribute["UserData"]["Value"].as_str().expect("the instance has user data");
    assert_eq!(got, encoded, "the instance has the schedule's user data");
    let user_data = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(got).unwrap()).unwrap();
    sandbox.imds.set_instance(Instance {
        id: instance_id.clone(),
        region: "us-east-1".into(),
        role: setup.role.map(str::to_string),
        ..Instance::default()
    });
    Some(Fired { sandbox, moto, instance_id, user_data, _wd: wd })
}

#[test]
fn a_fired_schedule_boots_a_worker_that_runs_its_rule_reports_and_shuts_down() {
    let Some(fired) = fire(NORMAL) else { return };
    let (moto, sandbox) = (&fired.moto, &fired.sandbox);
    let env = emulator_env(moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let boot = sandbox.boot(&fired.user_data, &env);
    let aws = Aws::new(moto);

    assert_eq!(boot.shutdown_calls, ["-h now"], "the worker shuts down once: {}", boot.describe());
    let fetched = std::fs::read(boot.bin_dir.join("coffer")).expect("the worker fetched coffer");
    assert!(fetched == std::fs::read(tools::worker_build()).unwrap(), "it runs the published binary");
    // The build that just ran its rule here starts on Amazon Linux 2 too (binutils reads it).
    let needed = tools::newest_glibc_needed(&tools::worker_build()).expect("a dynamically linked build");
    assert!(needed <= (2, 26, 0), "the worker build needs glibc {needed:?}, more than Amazon Linux 2's 2.26");
    assert!(
        sandbox
            .imds
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /latest/meta-data/iam/security-credentials/coffer-worker")),
        "the worker's credentials came from the instance profile: {:?}",
        sandbox.imds.requests()
    );

    let sessions = aws.keys(CATALOG_BUCKET, "sessions/prod/");
    assert_eq!(sessions.len(), 1, "one session: {sessions:?}\n{}", boot.describe());
    let session = aws.get_json(CATALOG_BUCKET, &sessions[0]).unwrap();
    assert_eq!(session["outcome"], "Success", "{session:#}\n{}", boot.describe());
    let snapshots = block_on(
        aws.ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:coffer:policy").values("prod").build())
            .send(),
    )
    .unwrap();
    assert_eq!(snapshots.snapshots().len(), 1, "the rule's snapshot of the instance's volume");
    let log = aws
        .get(CATALOG_BUCKET, &format!("worker-logs/{}.log", fired.instance_id))
        .expect("the worker's log in the catalog");
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains(&format!(
            "coffer-worker: instance {}, task: run --policy prod --rule hourly --scheduled",
            fired.instance_id
        )),
        "{log}"
    );
    assert!(log.contains("exit status 0"), "{log}");
    assert!(boot.logged.starts_with("logger -t coffer -f "), "and the system log has it: {}", boot.describe());

    let record = worker_record(&aws, &fired.instance_id);
    if std::env::var_os("COFFER_DEMO_SHOW").is_some() {
        // `make demo` runs this test to show a worker's life; the markers delimit what it prints.
        println!("--- coffer demo ---");
        println!("schedule coffer-prod-hourly launched instance {} (RunInstances with its input)", fired.instance_id);
        println!("the worker fetched the published coffer, ran its rule and called shutdown {:?}", boot.shutdown_calls);
        println!("its record in the catalog (workers/prod/…):\n{record:#}");
        println!("coffer sessions --policy prod:\n{}", sessions_table(moto));
        println!("the session it wrote ({}):\n{session:#}", sessions[0]);
        println!("--- end ---");
    }
    assert_eq!(record["policy"], "prod");
    assert_eq!(record["rule"], "hourly");
    assert_eq!(record["exit_status"], 0, "{record:#}");
    assert_eq!(record["log_key"], format!("worker-logs/{}.log", fired.instance_id));
    assert!(record["ended_at"].as_str() >= record["started_at"].as_str(), "{record:#}");
}

/// The one worker record of the test's policy, as the boot script left it.
fn worker_record(aws: &Aws, instance_id: &str) -> serde_json::Value {
    let keys = aws.keys(CATALOG_BUCKET, "workers/prod/");
    assert_eq!(keys.len(), 1, "one worker record: {keys:?}");
    assert!(keys[0].ends_with(&format!("-{instance_id}.json")), "{keys:?}");
    aws.get_json(CATALOG_BUCKET, &keys[0]).unwrap()
}

/// `coffer sessions --policy prod`, as a user would read it.
fn sessions_table(moto: &Moto) -> String {
    let out = estate::coffer_command(&moto.endpoint).args(["sessions", "--policy", "prod"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A worker that cannot start its task (here: nothing was published) still shuts down, its
/// log in the catalog says why, and `coffer sessions` shows the firing as Failed with that
/// reason.
#[test]
fn a_worker_without_a_published_binary_shuts_down_and_leaves_its_reason_in_the_catalog() {
    let Some(fired) = fire(Setup { publish: false, ..NORMAL }) else { return };
    boot_shuts_down(&fired);
    let aws = Aws::new(&fired.moto);
    let log = aws
        .get(CATALOG_BUCKET, &format!("worker-logs/{}.log", fired.instance_id))
        .expect("the worker's log in the catalog");
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("coffer-worker: cannot fetch s3://coffer-catalog-123456789012-us-east-1/bin/coffer-linux-x86_64 (run coffer publish"),
        "{log}"
    );
    assert!(log.contains("exit status 1"), "{log}");
    let record = worker_record(&aws, &fired.instance_id);
    assert_eq!(record["exit_status"], 1, "{record:#}");
    let table = sessions_table(&fired.moto);
    let table = table.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(table.contains(" hourly "), "{table}");
    assert!(table.contains(" Failed "), "{table}");
    assert!(
        table.contains(&format!(
            "worker {} (launched for rule hourly) ended before its run recorded a session: cannot fetch \
             s3://coffer-catalog-123456789012-us-east-1/bin/coffer-linux-x86_64 (run coffer publish, and check the \
             instance profile); its log: s3://coffer-catalog-123456789012-us-east-1/worker-logs/{}.log",
            fired.instance_id, fired.instance_id
        )),
        "{table}"
    );
}

/// A run that goes on past the policy's `max_run_time` (here its EC2 calls never get an
/// answer) is stopped: its session says it timed out, and the worker still shuts down.
#[test]
fn a_run_past_its_max_run_time_is_recorded_as_timed_out_and_the_worker_shuts_down() {
    let Some(fired) = fire(Setup { max_run_time: "1m", ..NORMAL }) else { return };
    // An endpoint that accepts connections and never answers, for EC2 only.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut env = emulator_env(&fired.moto);
    env.push(("AWS_ENDPOINT_URL_EC2", silent_url));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let boot = fired.sandbox.boot(&fired.user_data, &env);
    assert_eq!(boot.shutdown_calls, ["-h now"], "{}", boot.describe());
    let aws = Aws::new(&fired.moto);
    let sessions = aws.keys(CATALOG_BUCKET, "sessions/prod/");
    assert_eq!(sessions.len(), 1, "the run recorded its session: {sessions:?}\n{}", boot.describe());
    let session = aws.get_json(CATALOG_BUCKET, &sessions[0]).unwrap();
    assert_eq!(session["outcome"], "Failed", "{session:#}");
    let message = session["messages"][0].as_str().unwrap_or_default();
    assert!(message.starts_with("timed out: the run was stopped at the policy's max_run_time of 1m"), "{session:#}");
    assert!(message.contains("coffer run --policy prod --run-id "), "{message}");
    assert_eq!(worker_record(&aws, &fired.instance_id)["exit_status"], 1);
    let table = sessions_table(&fired.moto);
    assert!(table.contains("timed out: the run was stopped"), "{table}");
}

/// A worker without credentials can write nothing to the catalog: it shuts down, its log
/// goes to the serial console, and a firing no worker recorded shows as Missed once its
/// grace has passed, saying where to look.
#[test]
fn a_worker_without_credentials_shuts_down_logs_to_the_console_and_its_firing_shows_as_missed() {
    let Some(fired) = fire(Setup { role: None, ..NORMAL }) else { return };
    let boot = boot_shuts_down(&fired);
    let aws = Aws::new(&fired.moto);
    assert!(aws.keys(CATALOG_BUCKET, "workers/").is_empty(), "nothing could be written");
    assert!(aws.keys(CATALOG_BUCKET, "worker-logs/").is_empty());
    if std::path::Path::new("/dev/console").exists() {
        for said in ["coffer-worker: cannot fetch", "coffer-worker: the log could not be uploaded"] {
            assert!(boot.console.contains(said), "{said:?} on the console: {}", boot.describe());
        }
    } else {
        eprintln!("this machine has no /dev/console: the console output was not checked");
    }
    assert!(boot.logged.contains("cannot fetch"), "{}", boot.describe());

    // The firing this worker ran for came before the policy was written (it is the last top
    // of the hour), and due times before a policy's last change are not judged; the next
    // firing, whose worker would fail the same way, is.
    use chrono::Timelike;
    let next = chrono::Utc::now().with_minute(0).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap()
        + chrono::TimeDelta::hours(1);
    let dir = tempfile::tempdir().unwrap();
    let history = block_on(async {
        let executor = estate::executor(&fired.moto, dir.path(), 1).await;
        let policy = executor.policy("prod").await.unwrap();
        let grace = coffer_executor::history::missed_grace(&policy);
        assert_eq!(grace.num_minutes(), 70);
        coffer_executor::history::history(&executor, &policy, 10, next + grace).await.unwrap()
    });
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].outcome, coffer_executor::session::Outcome::Missed);
    assert_eq!(history[0].rules, ["hourly"]);
    assert_eq!(history[0].run_id, coffer_executor::scheduled_run_id(next));
    assert!(
        history[0].messages[0].contains("no worker recorded its start: check the rule's schedule"),
        "{:?}",
        history[0].messages
    );
}

/// A worker that cannot open a repository its rule backs up into (a password repository
/// whose workers' envelope was removed) still makes the rule's snapshot, records a session
/// that names the repository and what to set, and shuts down.
#[test]
fn a_worker_that_cannot_open_a_password_repository_records_why_and_shuts_down() {
    let Some(fired) = fire(Setup { envelope_removed: true, ..NORMAL }) else { return };
    let boot = boot_shuts_down(&fired);
    let aws = Aws::new(&fired.moto);
    let sessions = aws.keys(CATALOG_BUCKET, "sessions/prod/");
    assert_eq!(sessions.len(), 1, "the run recorded its session: {sessions:?}\n{}", boot.describe());
    let session = aws.get_json(CATALOG_BUCKET, &sessions[0]).unwrap();
    // The snapshot was made, the image-level point was not: Warning, as for any step that
    // failed for a resource.
    assert_eq!(session["outcome"], "Warning", "{session:#}");
    let resource = &session["resources"][0];
    assert_eq!(resource["snapshots"].as_array().map(Vec::len), Some(1), "{session:#}");
    let warning = resource["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("repository vault (")
            && warning.contains(
                "the repository is encrypted with a password and has no workers' key: set COFFER_REPOSITORY_PASSWORD, \
             or worker_kms_key_arn on its coffer_repository so workers open it with KMS"
            ),
        "{session:#}"
    );
    assert_eq!(worker_record(&aws, &fired.instance_id)["exit_status"], 3, "coffer's exit status for Warning");
    let table = sessions_table(&fired.moto);
    assert!(table.contains(" Warning "), "{table}");
}

/// A policy over two regions, one volume per worker: the schedule's worker (us-east-1) makes
/// every snapshot and the us-east-1 instance's restore point, and launches two workers in
/// eu-west-1 from the policy's worker configuration there, one per instance (slices 1/2 and
/// 2/2). Each, booted as an instance of its own (its own sandbox, IMDS and identity), reads
/// its instance's snapshot through the EBS direct API of eu-west-1, records its part and shuts
/// down; the first worker writes one session naming which worker made each point.
#[test]
fn a_two_region_policy_reads_each_regions_volumes_on_that_regions_workers() {
    let Some(fired) = fire(Setup { two_regions: true, ..NORMAL }) else { return };
    let (moto, sandbox) = (&fired.moto, &fired.sandbox);
    let env = emulator_env(moto);
    let (first, seconds) = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            fired.sandbox.boot(&fired.user_data, &env)
        });
        // The region's workers, as EC2 would start them: found by their tags in eu-west-1.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        let launched = loop {
            assert!(std::time::Instant::now() < deadline, "the eu-west-1 workers were not launched");
            assert!(!first.is_finished(), "the first worker ended without launching the eu-west-1 workers");
            let found = sandbox.aws_cli(
                &moto.endpoint,
                &[
                    "ec2",
                    "describe-instances",
                    "--region",
                    "eu-west-1",
                    "--filters",
                    "Name=tag-key,Values=coffer:part",
                    "Name=tag:coffer:policy,Values=prod",
                ],
            );
            let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap_or_default();
            let instances: Vec<serde_json::Value> = found["Reservations"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["Instances"].as_array().cloned().unwrap_or_default())
                .collect();
            if instances.len() >= 2 {
                break instances;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        };
        assert_eq!(launched.len(), 2, "one worker per volume: {launched:#?}");
        let port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let booting: Vec<_> = launched
            .iter()
            .map(|instance| {
                let id = instance["InstanceId"].as_str().unwrap().to_string();
                let tag = |key: &str| {
                    instance["Tags"].as_array().unwrap().iter().find(|t| t["Key"] == key).map(|t| t["Value"].clone())
                };
                let part = tag("coffer:part").unwrap();
                let attribute = sandbox.aws_cli(
                    &moto.endpoint,
                    &[
                        "ec2",
                        "describe-instance-attribute",
                        "--region",
                        "eu-west-1",
                        "--instance-id",
                        &id,
                        "--attribute",
                        "userData",
                    ],
                );
                let attribute: serde_json::Value = serde_json::from_slice(&attribute.stdout).unwrap();
                let encoded = attribute["UserData"]["Value"].as_str().expect("the worker has user data");
                let user_data =
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
                let env = env.clone();
                let instance_id = id.clone();
                let handle = sandbox.beside(vec![port], move |ireland, scopes| {
                    ireland.imds.set_instance(Instance {
                        id: instance_id,
                        region: "eu-west-1".into(),
                        role: Some("coffer-worker".into()),
                        ..Instance::default()
                    });
                    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    (ireland.boot(&user_data, &env), scopes.seen())
                });
                (id, part, handle)
            })
            .collect();
        let seconds: Vec<_> =
            booting.into_iter().map(|(id, part, handle)| (id, part, handle.join().unwrap())).collect();
        (first.join().unwrap(), seconds)
    });
    assert_eq!(first.shutdown_calls, ["-h now"], "the first worker shuts down once: {}", first.describe());
    let mut parts: Vec<String> = seconds.iter().map(|(_, part, _)| part.as_str().unwrap().to_string()).collect();
    parts.sort();
    assert_eq!(parts, ["eu-west-1-1of2", "eu-west-1-2of2"]);
    for (id, _, (boot, scopes)) in &seconds {
        assert_eq!(boot.shutdown_calls, ["-h now"], "{id} shuts down once: {}", boot.describe());
        let ebs: Vec<&String> = scopes.iter().filter(|s| s.ends_with("/ebs")).collect();
        assert!(!ebs.is_empty(), "{id} read its snapshot through EBS direct: {scopes:?}");
        assert!(ebs.iter().all(|s| *s == "eu-west-1/ebs"), "and only eu-west-1's: {scopes:?}");
    }

    let aws = Aws::new(moto);
    let sessions = aws.keys(CATALOG_BUCKET, "sessions/prod/");
    assert_eq!(sessions.len(), 1, "one session: {sessions:?}\n{}", first.describe());
    let session = aws.get_json(CATALOG_BUCKET, &sessions[0]).unwrap();
    let described = || seconds.iter().map(|(_, _, (b, _))| b.describe()).collect::<Vec<_>>().join("\n");
    assert_eq!(session["outcome"], "Success", "{session:#}\n{}\n{}", first.describe(), described());
    let resources = session["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 3, "{session:#}");
    let mut ireland_workers = Vec::new();
    for resource in resources {
        let backups = resource["backups"].as_array().expect("an image-level point");
        assert_eq!(backups.len(), 1, "{session:#}");
        let worker = backups[0]["worker"].as_str().unwrap_or_default().to_string();
        match resource["region"].as_str() {
            Some("us-east-1") => assert_eq!(worker, fired.instance_id, "the first worker made it: {session:#}"),
            Some("eu-west-1") => ireland_workers.push(worker),
            other => panic!("a resource in {other:?}: {session:#}"),
        }
    }
    ireland_workers.sort();
    let mut launched: Vec<String> = seconds.iter().map(|(id, _, _)| id.clone()).collect();
    launched.sort();
    assert_eq!(ireland_workers, launched, "each eu-west-1 point was made by one of the region's workers: {session:#}");
    let run_id = session["run_id"].as_str().unwrap();
    let records = aws.keys(CATALOG_BUCKET, "workers/prod/");
    assert_eq!(records.len(), 3, "every worker recorded itself: {records:?}");
    for (id, part, _) in &seconds {
        let label = part.as_str().unwrap();
        let stored = aws.get_json(CATALOG_BUCKET, &format!("parts/prod/{run_id}/{label}.json")).expect("its part");
        assert_eq!(stored["instance_id"], id.as_str());
        let record = records.iter().find(|k| k.ends_with(&format!("-{id}.json"))).expect("its record");
        let record = aws.get_json(CATALOG_BUCKET, record).unwrap();
        assert_eq!(record["part"], label, "{record:#}");
        assert_eq!(record["rule"], "hourly", "{record:#}");
        assert_eq!(record["exit_status"], 0, "{record:#}");
        assert!(aws.get(CATALOG_BUCKET, &format!("worker-logs/{id}.log")).is_some(), "its log is in the catalog");
    }
}
