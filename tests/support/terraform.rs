//! Driving real Terraform CLIs against the provider binary built by cargo.
//!
//! Every test runs against each version from [`terraform_versions`]: the
//! oldest supported one (1.0.3, installed into `.tools/`) and, when present,
//! the newer `terraform` on `PATH`. A [`Workdir`] is a throw-away Terraform
//! root module whose provider comes from a local filesystem mirror, so
//! `terraform init` never touches the network.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tools;

/// The oldest Terraform the provider supports; always tested.
pub const OLDEST_VERSION: &str = "1.0.3";
/// Provider address, as written in `required_providers` (`source = "coffer/coffer"`).
pub const PROVIDER_SOURCE: &str = "registry.terraform.io/coffer/coffer";
/// The version the mirror offers the plugin binary as.
pub const PROVIDER_VERSION: &str = "0.1.0";

/// Default limit for one terraform command; `COFFER_TF_TIMEOUT_SECS` overrides.
/// A hung provider must fail the test, not eat CI's whole time budget.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// One Terraform CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terraform {
    /// The executable.
    pub path: PathBuf,
    /// Its version without the `v`, e.g. `"1.0.3"`.
    pub version: String,
}

impl Terraform {
    /// The version as numbers, for comparisons (`(1, 0, 3)`).
    pub fn version_tuple(&self) -> (u64, u64, u64) {
        parse_version(&self.version).unwrap_or_else(|| panic!("unparsable terraform version {:?}", self.version))
    }

    /// True if this CLI is at least `major.minor`, for version-specific
    /// expectations (messages and plan rendering differ between releases).
    pub fn at_least(&self, major: u64, minor: u64) -> bool {
        let (ma, mi, _) = self.version_tuple();
        (ma, mi) >= (major, minor)
    }
}

/// The Terraform CLIs to test against, oldest first, newest last: always
/// 1.0.3 from `.tools/` (installed on first use), plus `terraform` from `PATH`
/// if it is >= 1.0 and a different version.
///
/// `COFFER_TF_VERSIONS` restricts the list: `all` (default), `newest`,
/// `oldest`, or a comma-separated list of exact versions (each must exist).
pub fn terraform_versions() -> Vec<Terraform> {
    let all = available_versions();
    let choice = std::env::var("COFFER_TF_VERSIONS").unwrap_or_default();
    match choice.trim() {
        "" | "all" => all.clone(),
        "newest" => vec![all.last().expect("at least 1.0.3").clone()],
        "oldest" => vec![all[0].clone()],
        list => list
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|wanted| {
                let wanted = wanted.trim_start_matches('v');
                all.iter().find(|tf| tf.version == wanted).cloned().unwrap_or_else(|| {
                    panic!(
                        "COFFER_TF_VERSIONS asks for terraform {wanted}, available: {:?}",
                        all.iter().map(|t| &t.version).collect::<Vec<_>>()
                    )
                })
            })
            .collect(),
    }
}

/// The oldest supported CLI (1.0.3), regardless of `COFFER_TF_VERSIONS`.
pub fn oldest_terraform() -> Terraform {
    available_versions()[0].clone()
}

/// Every usable CLI, probed once per process (each probe runs terraform).
fn available_versions() -> &'static Vec<Terraform> {
    static VERSIONS: OnceLock<Vec<Terraform>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        tools::ensure_installed();
        let bundled = tools::repo_root().join(format!(".tools/terraform-{OLDEST_VERSION}/terraform"));
        let bundled_version =
            probe_version(&bundled).unwrap_or_else(|e| panic!("{} is not usable: {e}", bundled.display()));
        assert_eq!(bundled_version, OLDEST_VERSION, "{}", bundled.display());
        let mut versions = vec![Terraform { path: bundled, version: bundled_version }];
        if let Some(on_path) = tools::find_on_path("terraform") {
            // An unusable or older terraform on PATH is simply not tested with.
            if let Ok(version) = probe_version(&on_path) {
                if parse_version(&version).is_some_and(|v| v >= (1, 0, 0)) && version != OLDEST_VERSION {
                    versions.push(Terraform { path: on_path, version });
                }
            }
        }
        versions.sort_by_key(Terraform::version_tuple);
        versions
    })
}

/// Asks a terraform binary for its version (`terraform version -json`, which
/// every release since 0.13 has).
fn probe_version(path: &Path) -> Result<String, String> {
    let output = Command::new(path)
        .args(["version", "-json"])
        // A TF_CLI_CONFIG_FILE naming a missing file only warns, but keep
        // the probe independent of the developer's CLI config anyway.
        .env_remove("TF_CLI_CONFIG_FILE")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`terraform version -json` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let json: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`terraform version -json` printed no JSON: {e}"))?;
    json["terraform_version"].as_str().map(str::to_owned).ok_or_else(|| format!("no terraform_version in {json}"))
}

/// `"1.11.4"` → `(1, 11, 4)`; pre-release suffixes (`1.12.0-beta1`) are dropped.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next().unwrap_or(Some(0))?))
}

/// The provider mirror plus the CLI config pointing at it, shared by every
/// workdir in this process that uses the same provider binary.
struct Mirror {
    cli_config: PathBuf,
}

/// Builds (once per binary per process) a filesystem mirror in Terraform's
/// *unpacked* layout, `HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION`,
/// and a CLI config file that installs `coffer/coffer` only from it.
fn mirror_for(provider_binary: &Path) -> &'static Mirror {
    static MIRRORS: OnceLock<Mutex<HashMap<PathBuf, &'static Mirror>>> = OnceLock::new();
    let mut mirrors = MIRRORS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(mirror) = mirrors.get(provider_binary) {
        return mirror;
    }

    // Under cargo's per-target scratch dir rather than /tmp: the binary can be
    // hard-linked there (same filesystem), and dirs of dead test processes are
    // swept below, since a static is never dropped to clean up after itself.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coffer-provider-mirror");
    std::fs::create_dir_all(&base).expect("create mirror base dir");
    sweep_dead_process_dirs(&base);
    let own = base.join(format!("p{}-{}", std::process::id(), mirrors.len()));
    let _ = std::fs::remove_dir_all(&own); // left by an earlier process with our pid
    let mirror_root = own.join("mirror");
    let (host, namespace, type_name) = {
        let mut parts = PROVIDER_SOURCE.split('/');
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    };
    let package_dir = mirror_root.join(host).join(namespace).join(type_name).join(PROVIDER_VERSION).join("linux_amd64");
    std::fs::create_dir_all(&package_dir).expect("create mirror package dir");
    let target = package_dir.join(format!("terraform-provider-{type_name}_v{PROVIDER_VERSION}"));
    assert!(provider_binary.is_file(), "provider binary {} does not exist", provider_binary.display());
    // A hard link is a snapshot of this build (cargo replaces, not rewrites,
    // the binary on rebuild) at no cost; copy across filesystems.
    if std::fs::hard_link(provider_binary, &target).is_err() {
        std::fs::copy(provider_binary, &target).expect("copy provider binary into mirror");
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod provider binary");
    }
    // A release package carries the worker build beside the provider, which publishes it.
    let shipped = provider_binary.with_file_name(coffer::provider::SHIPPED_WORKER_BINARY);
    if shipped.is_file() {
        std::fs::copy(&shipped, package_dir.join(coffer::provider::SHIPPED_WORKER_BINARY)).expect("copy worker build");
    }

    let cli_config = own.join("terraform.tfrc");
    let mirror_path = hcl_string(&mirror_root.to_string_lossy());
    std::fs::write(
        &cli_config,
        format!(
            r#"# Written by tests/support/terraform.rs: coffer/coffer comes only from the
# local mirror; every other provider (none expected) would come from its registry.
disable_checkpoint = true

provider_installation {{
  filesystem_mirror {{
    path    = {mirror_path}
    include = ["{PROVIDER_SOURCE}"]
  }}
  direct {{
    exclude = ["{PROVIDER_SOURCE}"]
  }}
}}
"#
        ),
    )
    .expect("write CLI config");

    let mirror: &'static Mirror = Box::leak(Box::new(Mirror { cli_config }));
    mirrors.insert(provider_binary.to_path_buf(), mirror);
    mirror
}

/// Removes `p<pid>-*` dirs whose process no longer exists.
fn sweep_dead_process_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `s` as a quoted string for the CLI config (HCL 1, no templates to escape).
fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Environment variables never passed on to terraform (and so to the
/// provider): they would make a test depend on the developer's machine.
fn is_scrubbed(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "TF_DATA_DIR",
        "TF_WORKSPACE",
        "TF_PLUGIN_CACHE_DIR",
        "TF_INPUT",
        "TF_REATTACH_PROVIDERS",
    ];
    EXACT.contains(&name)
        || name.starts_with("AWS_ENDPOINT_URL")
        || name.starts_with("AWS_CONTAINER_")
        || name.starts_with("TF_CLI_ARGS")
        || name.starts_with("TF_VAR_")
}

/// A throw-away Terraform working directory using one CLI and the provider
/// under test. Deleted on drop, unless the test panicked and
/// `COFFER_KEEP_WORKDIRS` is set (its path is printed then).
pub struct Workdir {
    dir: tempfile::TempDir,
    tf: Terraform,
    provider_binary: PathBuf,
    cli_config: PathBuf,
    env: Vec<(String, String)>,
}

impl Workdir {
    /// An empty root module for `tf` whose `coffer/coffer` provider is
    /// `provider_binary` (see [`super::provider_binary`]). Write `*.tf` files
    /// with [`Workdir::write`], then [`Workdir::init`].
    pub fn new(tf: &Terraform, provider_binary: &Path) -> Workdir {
        let mirror = mirror_for(provider_binary);
        let dir = tempfile::Builder::new()
            .prefix(&format!("coffer-tf{}-", tf.version))
            .tempdir()
            .expect("create terraform workdir");
        Workdir {
            dir,
            tf: tf.clone(),
            provider_binary: provider_binary.to_path_buf(),
            cli_config: mirror.cli_config.clone(),
            env: Vec::new(),
        }
    }

    /// Another workdir with the same CLI, provider, extra env and
    /// configuration files (`*.tf`, `*.tf.json`, `*.tfvars`, `*.tfvars.json`)
    /// but no state and not initialised: for "import into a fresh state" tests.
    pub fn fresh_state_copy(&self) -> Workdir {
        let mut copy = Workdir::new(&self.tf, &self.provider_binary);
        copy.env = self.env.clone();
        for entry in std::fs::read_dir(self.path()).expect("read workdir") {
            let entry = entry.expect("read workdir entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_config = [".tf", ".tf.json", ".tfvars", ".tfvars.json"].iter().any(|ext| name.ends_with(ext));
            if is_config && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                std::fs::copy(entry.path(), copy.path().join(&name)).expect("copy config file");
            }
        }
        copy
    }

    /// The directory terraform runs in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CLI this workdir runs.
    pub fn tf(&self) -> &Terraform {
        &self.tf
    }

    /// Adds (or replaces) an environment variable for every later terraform
    /// command, and so for the provider; applied after the defaults.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Writes (or overwrites) a file in the workdir, e.g. `main.tf`.
    pub fn write(&self, file_name: &str, contents: &str) {
        std::fs::write(self.path().join(file_name), contents).unwrap_or_else(|e| panic!("write {file_name}: {e}"));
    }

    /// Deletes a file from the workdir (e.g. a resource's `.tf` to plan its destroy).
    pub fn remove(&self, file_name: &str) {
        std::fs::remove_file(self.path().join(file_name)).unwrap_or_else(|e| panic!("remove {file_name}: {e}"));
    }

    /// `terraform init`; panics on failure. Returns the combined output.
    pub fn init(&self) -> String {
        self.must(&["init", "-input=false", "-no-color"])
    }

    /// `terraform apply -auto-approve`; panics with the full output on failure.
    pub fn apply(&self) -> String {
        self.must(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform apply -auto-approve` that may fail: `Err` holds the output.
    pub fn try_apply(&self) -> Result<String, String> {
        self.attempt(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: (0 no changes | 1 error | 2 changes,
    /// combined output).
    pub fn plan_exit_code(&self) -> (i32, String) {
        let (status, output) = self.combined(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        (status.code().unwrap_or(-1), output)
    }

    /// Panics unless a plan shows no changes (the usual post-apply check).
    pub fn assert_no_changes(&self) {
        let (code, output) = self.plan_exit_code();
        assert_eq!(code, 0, "{}: expected an empty plan, got exit {code}:\n{output}", self.label());
    }

    /// `terraform plan` that may fail: `Err` holds the output.
    pub fn try_plan(&self) -> Result<String, String> {
        self.attempt(&["plan", "-input=false", "-no-color"])
    }

    /// The plan as JSON (`plan -out` then `show -json`), for asserting on
    /// `resource_changes[].change.actions` and friends; panics on failure.
    pub fn plan_json(&self) -> Value {
        self.must(&["plan", "-input=false", "-no-color", "-out=coffer-test.tfplan"]);
        let json = self.json(&["show", "-json", "-no-color", "coffer-test.tfplan"]);
        let _ = std::fs::remove_file(self.path().join("coffer-test.tfplan"));
        json
    }

    /// `terraform import ADDRESS ID`; panics on failure.
    pub fn import(&self, address: &str, id: &str) -> String {
        self.must(&["import", "-input=false", "-no-color", address, id])
    }

    /// `terraform import ADDRESS ID` that may fail: `Err` holds the output.
    pub fn try_import(&self, address: &str, id: &str) -> Result<String, String> {
        self.attempt(&["import", "-input=false", "-no-color", address, id])
    }

    /// `terraform destroy -auto-approve`; panics on failure.
    pub fn destroy(&self) -> String {
        self.must(&["destroy", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform destroy -auto-approve` that may fail: `Err` holds the output.
    pub fn try_destroy(&self) -> Result<String, String> {
        self.attempt(&["destroy", "-auto-approve", "-input=false", "-no-color"])
    }

    /// The state as JSON (`terraform show -json`); see [`resource_values`].
    pub fn state_json(&self) -> Value {
        self.json(&["show", "-json", "-no-color"])
    }

    /// The root module outputs as JSON (`terraform output -json`):
    /// `{"name": {"value": …, "type": …, "sensitive": …}}`.
    pub fn output_json(&self) -> Value {
        self.json(&["output", "-json", "-no-color"])
    }

    /// Runs terraform with exactly `args` (no flags added) in the workdir's
    /// environment; stdout and stderr separate. For anything not covered above.
    pub fn run(&self, args: &[&str]) -> Output {
        let stdout = tempfile::tempfile().expect("temp file");
        let stderr = tempfile::tempfile().expect("temp file");
        let status = self.exec(args, stdout.try_clone().unwrap(), stderr.try_clone().unwrap());
        Output { status, stdout: read_all(stdout), stderr: read_all(stderr) }
    }

    /// "terraform 1.0.3 in /tmp/…", for messages.
    fn label(&self) -> String {
        format!("terraform {} in {}", self.tf.version, self.path().display())
    }

    fn must(&self, args: &[&str]) -> String {
        self.attempt(args)
            .unwrap_or_else(|output| panic!("`terraform {}` failed ({}):\n{output}", args.join(" "), self.label()))
    }

    fn attempt(&self, args: &[&str]) -> Result<String, String> {
        let (status, output) = self.combined(args);
        if status.success() { Ok(output) } else { Err(output) }
    }

    /// Runs with stdout and stderr interleaved in one file, in the order
    /// terraform wrote them, as a person at a terminal would see them.
    fn combined(&self, args: &[&str]) -> (ExitStatus, String) {
        let file = tempfile::tempfile().expect("temp file");
        let status = self.exec(args, file.try_clone().unwrap(), file.try_clone().unwrap());
        (status, String::from_utf8_lossy(&read_all(file)).into_owned())
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            panic!(
                "`terraform {}` failed ({}, {}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                args.join(" "),
                output.status,
                self.label()
            );
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`terraform {}` printed no JSON ({e}, {}):\n{stdout}\n--- stderr ---\n{stderr}",
                args.join(" "),
                self.label()
            )
        })
    }

    /// The one place terraform is spawned: hermetic environment, no stdin,
    /// its own process group, and a time limit.
    fn exec(&self, args: &[&str], stdout: File, stderr: File) -> ExitStatus {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.tf.path);
        cmd.args(args).current_dir(self.path());
        for (name, _) in std::env::vars_os() {
            if let Some(name) = name.to_str() {
                if is_scrubbed(name) {
                    cmd.env_remove(name);
                }
            }
        }
        let no_such_file = self.path().join(".no-aws-config");
        // Always set: the ambient TF_CLI_CONFIG_FILE may name a missing file,
        // and the developer's own config must not change provider installation.
        cmd.env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("AWS_ACCESS_KEY_ID", super::moto::TEST_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", super::moto::TEST_SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Keep the developer's ~/.aws files out of the provider's view.
            .env("AWS_CONFIG_FILE", &no_such_file)
            .env("AWS_SHARED_CREDENTIALS_FILE", &no_such_file);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        // Own process group so a timeout can take the provider plugin down too.
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tf.path.display()));
        wait_with_timeout(&mut child, timeout()).unwrap_or_else(|| {
            panic!("`terraform {}` did not finish within {:?} ({}); killed", args.join(" "), timeout(), self.label())
        })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("COFFER_KEEP_WORKDIRS").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept terraform workdir {}", self.path().display());
        }
    }
}

/// The values of the resource at `address` (e.g. `coffer_vault.main`,
/// `module.m.coffer_plan.p["x"]`) in a `show -json` state or a plan's
/// `planned_values`, searching child modules too.
pub fn resource_values<'a>(state_or_plan: &'a Value, address: &str) -> Option<&'a Value> {
    fn search<'a>(module: &'a Value, address: &str) -> Option<&'a Value> {
        let found = module["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["address"] == address)
            .map(|r| &r["values"]);
        found.or_else(|| module["child_modules"].as_array().into_iter().flatten().find_map(|m| search(m, address)))
    }
    let values = state_or_plan.get("values").or_else(|| state_or_plan.get("planned_values"))?;
    search(&values["root_module"], address)
}

fn timeout() -> Duration {
    std::env::var("COFFER_TF_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Waits for `child`; on timeout kills its whole process group (terraform and
/// the provider it started) and returns `None`.
fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait for terraform") {
            return Some(status);
        }
        if Instant::now() > deadline {
            // The group id is terraform's pid (process_group(0)); `kill` is
            // used because signalling a group directly needs unsafe libc.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn read_all(mut file: File) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).expect("rewind output file");
    file.read_to_end(&mut bytes).expect("read output file");
    bytes
}
