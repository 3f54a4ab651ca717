//! A sandbox that looks like an EC2 instance to what runs in it, for booting a worker's user
//! data as the instance would.
//!
//! [`Sandbox::enter`] moves the *calling test thread* into a network namespace of its own
//! (`unshare(CLONE_NEWNET)` acts on the calling thread only, and every thread and process it
//! starts afterwards inherits it; libtest runs every test on a thread of its own, so other
//! tests never see the namespace): inside there is nothing but a loopback, so the moto server
//! the test then starts, terraform, the AWS CLI and the worker reach only 127.0.0.1 and
//! 169.254.169.254 — the instance metadata address, put on that loopback and answered by
//! [`Imds`] as IMDSv2 does (a token first; instance id, tags, instance-profile credentials).
//! [`Sandbox::boot`] runs a user-data script under `bash` in a private mount namespace where
//! `/usr/local/bin` is a directory of the test's, with `shutdown` and `logger` replaced by
//! shims that record their calls, and the pinned AWS CLI (`.venv-awscli/`) on `PATH`.
//! Network namespaces need root: without it, [`Sandbox::enter`] says so and returns `None`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tools;

/// IMDS's address (EC2 user guide, "Access instance metadata").
pub const IMDS_ADDRESS: &str = "169.254.169.254";
/// The token the sandbox's IMDS hands out and requires.
const TOKEN: &str = "coffer-sandbox-imds-token";
/// The longest a boot may take before the sandbox stops it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the metadata service says about "this instance".
#[derive(Debug, Default, Clone)]
pub struct Instance {
    pub id: String,
    pub region: String,
    /// The instance profile's role name; credentials are moto's test keys.
    pub role: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// An IMDSv2 on 169.254.169.254:80 in the sandbox's namespace.
pub struct Imds {
    instance: Arc<Mutex<Instance>>,
    /// Paths asked for, in order (`PUT /latest/api/token` included).
    requests: Arc<Mutex<Vec<String>>>,
}

impl Imds {
    pub fn set_instance(&self, instance: Instance) {
        *self.instance.lock().unwrap() = instance;
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn start() -> Imds {
        let listener = TcpListener::bind((IMDS_ADDRESS, 80)).expect("bind 169.254.169.254:80 in the sandbox");
        let imds = Imds { instance: Arc::default(), requests: Arc::default() };
        let (instance, requests) = (imds.instance.clone(), imds.requests.clone());
        // The thread lives in the sandbox's namespace; it ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (instance, requests) = (instance.clone(), requests.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &instance, &requests);
                });
            }
        });
        imds
    }
}

/// One request on one connection (clients here send `Connection: close` or one request).
fn answer(
    stream: std::net::TcpStream,
    instance: &Mutex<Instance>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut token = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "x-aws-ec2-metadata-token" => token = Some(value.trim().to_string()),
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    if content_length > 0 {
        std::io::copy(&mut std::io::Read::take(&mut reader, content_length as u64), &mut std::io::sink())?;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    requests.lock().unwrap().push(format!("{method} {path}"));
    let instance = instance.lock().unwrap().clone();
    let (status, body) = respond(method, path, token.as_deref(), &instance);
    // The token answer says how long the token lives, as IMDS does (the SDKs require it).
    let ttl = if method == "PUT" { "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n" } else { "" };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\n{ttl}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// IMDSv2: a session token by PUT, then every GET carries it; anything else is 401.
fn respond(method: &str, path: &str, token: Option<&str>, instance: &Instance) -> (u16, String) {
    if method == "PUT" && path == "/latest/api/token" {
        return (200, TOKEN.to_string());
    }
    if token != Some(TOKEN) {
        return (401, String::new());
    }
    let Some(item) = path.strip_prefix("/latest/meta-data/") else { return (404, String::new()) };
    let found = match item {
        "instance-id" => Some(instance.id.clone()),
        "placement/region" => Some(instance.region.clone()),
        "iam/security-credentials/" => instance.role.clone(),
        _ => match (item.strip_prefix("iam/security-credentials/"), item.strip_prefix("tags/instance/")) {
            (Some(role), _) if Some(role) == instance.role.as_deref() => Some(
                serde_json::json!({
                    "Code": "Success",
                    "LastUpdated": imds_time(chrono::Utc::now()),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": super::moto::TEST_ACCESS_KEY,
                    "SecretAccessKey": super::moto::TEST_SECRET_KEY,
                    "Token": "sandbox-session-token",
                    "Expiration": imds_time(chrono::Utc::now() + chrono::Duration::hours(6)),
                })
                .to_string(),
            ),
            (_, Some(tag)) => instance.tags.get(tag).cloned(),
            _ => None,
        },
    };
    found.map_or((404, String::new()), |body| (200, body))
}

/// Times as IMDS writes them: UTC with a `Z`, no fraction.
fn imds_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The sandbox of one test thread.
pub struct Sandbox {
    pub imds: Imds,
    dir: tempfile::TempDir,
    /// The sandbox's network namespace, for [`Sandbox::beside`]'s forwarders.
    netns: std::fs::File,
}

/// The SigV4 credential scopes (`<region>/<service>`) of the requests a second sandbox sent
/// through its forwarders, in order: which regions' APIs its instance called.
#[derive(Debug, Clone, Default)]
pub struct Scopes(Arc<Mutex<Vec<String>>>);

impl Scopes {
    pub fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Records each complete `Credential=<key id>/<date>/<region>/<service>/aws4_request` in
    /// `text` that ends after byte `seen_up_to` (those ending before were recorded already).
    fn record(&self, text: &str, seen_up_to: usize) {
        const END: &str = "/aws4_request";
        for (start, _) in text.match_indices("Credential=") {
            let rest = &text[start..];
            let Some(end) = rest.find(END) else { continue };
            if start + end + END.len() <= seen_up_to {
                continue;
            }
            let parts: Vec<&str> = rest[..end].split('/').collect();
            if let [_, _, region, service] = parts[..] {
                self.0.lock().unwrap().push(format!("{region}/{service}"));
            }
        }
    }
}

/// What one boot did.
#[derive(Debug)]
pub struct Boot {
    pub output: Output,
    /// The arguments of each `shutdown` call.
    pub shutdown_calls: Vec<String>,
    /// What was sent to `logger`, with its arguments first on each call's line.
    pub logged: String,
    /// What was written to the serial console.
    pub console: String,
    /// The instance's `/usr/local/bin` after the boot.
    pub bin_dir: PathBuf,
}

impl Boot {
    pub fn describe(&self) -> String {
        let tail = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let chars = text.chars().count();
            text.chars().skip(chars.saturating_sub(4000)).collect::<String>()
        };
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- logger ---\n{}",
            self.output.status,
            tail(&self.output.stdout),
            tail(&self.output.stderr),
            tail(self.logged.as_bytes())
        )
    }
}

const SHUTDOWN_SHIM: &str = "#!/bin/sh\necho \"$*\" >> \"$SANDBOX_DIR/shutdown.calls\"\n";
/// `logger [-t TAG] [-f FILE]`: the arguments on a line, then the file or standard input.
const LOGGER_SHIM: &str = r#"#!/bin/sh
echo "logger $*" >> "$SANDBOX_DIR/logger.out"
while [ $# -gt 0 ]; do
    if [ "$1" = "-f" ]; then cat "$2" >> "$SANDBOX_DIR/logger.out"; exit 0; fi
    shift
done
cat >> "$SANDBOX_DIR/logger.out"
"#;

impl Sandbox {
    /// Moves this thread into a fresh network namespace with IMDS on its loopback; `None`
    /// (after saying why on stderr) when this process may not (not root).
    pub fn enter() -> Option<Sandbox> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the worker sandbox needs root (network and mount namespaces)");
            return None;
        }
        // Only the calling thread's namespace changes: other tests' threads keep theirs.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        Some(Self::set_up())
    }

    /// The calling thread's fresh namespace made to look like an instance.
    fn set_up() -> Sandbox {
        run_checked(Command::new("ip").args(["link", "set", "lo", "up"]));
        run_checked(Command::new("ip").args(["addr", "add", &format!("{IMDS_ADDRESS}/32"), "dev", "lo"]));
        let dir = tempfile::Builder::new().prefix("coffer-sandbox-").tempdir().expect("sandbox dir");
        for sub in ["shims", "usr-local-bin", "home"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        write_executable(&dir.path().join("shims/shutdown"), SHUTDOWN_SHIM);
        write_executable(&dir.path().join("shims/logger"), LOGGER_SHIM);
        let netns = std::fs::File::open("/proc/thread-self/ns/net").expect("the sandbox's network namespace");
        Sandbox { imds: Imds::start(), dir, netns }
    }

    /// Runs `f` on a thread of its own in a second sandbox — a second instance, with its own
    /// namespace and IMDS — where `ports` of this sandbox's loopback (the emulator's) are
    /// forwarded to this one, recording the credential scopes of what passes.
    pub fn beside<R: Send + 'static>(
        &self,
        ports: Vec<u16>,
        f: impl FnOnce(&Sandbox, &Scopes) -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let outer = self.netns.try_clone().expect("the sandbox's namespace");
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let sandbox = Self::set_up();
            let scopes = Scopes::default();
            let outer = Arc::new(outer);
            for port in ports {
                let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the forwarded port");
                let (outer, scopes) = (outer.clone(), scopes.clone());
                std::thread::spawn(move || {
                    for client in listener.incoming().flatten() {
                        let (outer, scopes) = (outer.clone(), scopes.clone());
                        std::thread::spawn(move || forward(client, &outer, port, &scopes));
                    }
                });
            }
            f(&sandbox, &scopes)
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The pinned AWS CLI, against `endpoint`, with the test's keys: what the test itself
    /// does as Scheduler or as a user.
    pub fn aws_cli(&self, endpoint: &str, args: &[&str]) -> Output {
        Command::new(awscli())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path().join("home"))
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", super::moto::TEST_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", super::moto::TEST_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("run the AWS CLI")
    }

    /// Runs `user_data` as the instance's first boot would: as root, under bash, with no AWS
    /// credentials but the instance profile's (IMDS), `/usr/local/bin` private to the boot.
    /// `env` is what the emulator needs besides (its endpoint).
    pub fn boot(&self, user_data: &str, env: &[(&str, &str)]) -> Boot {
        let script = self.path().join("user-data");
        std::fs::write(&script, user_data).unwrap();
        let bin_dir = self.path().join("usr-local-bin");
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.path().join("shims").display(),
            awscli().parent().unwrap().display()
        );
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "bash", "-c"])
            // The serial console, which EC2 keeps (GetConsoleOutput): a file of the sandbox's.
            .arg(concat!(
                r#"mount --bind "$1" /usr/local/bin && touch "$SANDBOX_DIR/console" "#,
                r#"&& { [ ! -e /dev/console ] || mount --bind "$SANDBOX_DIR/console" /dev/console; } "#,
                r#"&& exec timeout "$3" bash "$2""#
            ))
            .args([std::ffi::OsStr::new("boot"), bin_dir.as_os_str(), script.as_os_str()])
            .arg(BOOT_TIMEOUT.as_secs().to_string())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path().join("home"))
            .env("SANDBOX_DIR", self.path());
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("run the user data");
        let read = |name: &str| std::fs::read_to_string(self.path().join(name)).unwrap_or_default();
        Boot {
            output,
            shutdown_calls: read("shutdown.calls").lines().map(str::to_string).collect(),
            logged: read("logger.out"),
            console: read("console"),
            bin_dir,
        }
    }
}

/// Carries one connection of the second sandbox to `port` in the first: the upstream socket
/// is made from the first sandbox's namespace (a socket stays in the namespace it was made
/// in, whichever thread then uses it).
fn forward(client: std::net::TcpStream, outer: &std::fs::File, port: u16, scopes: &Scopes) {
    use std::io::Read;
    use std::os::fd::AsFd;
    if nix::sched::setns(outer.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return;
    }
    let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
    let (Ok(mut from_upstream), Ok(mut to_client)) = (upstream.try_clone(), client.try_clone()) else { return };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Write);
    });
    let (mut client, mut upstream) = (client, upstream);
    let mut buffer = vec![0u8; 64 * 1024];
    // The end of the previous read, so a scope split across two reads is still seen.
    let mut tail = String::new();
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let text = tail.clone() + &String::from_utf8_lossy(&buffer[..n]);
        scopes.record(&text, tail.len());
        // Longer than any credential scope, so one split across two reads is whole in the next.
        let keep = text.char_indices().rev().nth(199).map_or(0, |(i, _)| i);
        tail = text[keep..].to_string();
        if upstream.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = upstream.shutdown(std::net::Shutdown::Write);
}

fn awscli() -> PathBuf {
    tools::ensure_installed();
    tools::repo_root().join(".venv-awscli/bin/aws")
}

fn write_executable(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run_checked(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}
