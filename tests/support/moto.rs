//! A private moto server (the local AWS emulator) per test.
//!
//! Each test starts its own [`Moto`] on a free 127.0.0.1 port, so tests can run
//! in parallel without seeing each other's resources. See
//! `shared/EMULATOR.md` for what moto does and where it differs from AWS.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use super::tools;

/// The account moto acts as for the static test credentials.
pub const ACCOUNT_ID: &str = "123456789012";
/// Access key every client in the tests uses against moto.
pub const TEST_ACCESS_KEY: &str = "test";
/// Secret key every client in the tests uses against moto.
pub const TEST_SECRET_KEY: &str = "test";

/// How long moto may take to answer after being spawned (~1 s on an idle
/// machine; several servers starting at once on 2 cores are much slower).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports to try when another process grabs ours first.
const PORT_ATTEMPTS: usize = 5;
/// How long `Drop` waits for the server to go away before killing the wrapper.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The wrapper moto runs under. Its stdin is a pipe whose write end only this
/// test process holds: when the test process goes away for any reason
/// (including SIGKILL or a CI timeout, where `Drop` never runs) the pipe hits
/// EOF and the watchdog stops moto, so no orphaned servers pile up.
/// `$0` is the moto_server program, `$@` its arguments. The shell exits with
/// moto's status as soon as moto exits (e.g. when its port was taken).
const WATCHDOG: &str = r#"
exec 3<&0 0</dev/null
"$0" "$@" &
pid=$!
( read -r _ <&3; kill -TERM "$pid" 2>/dev/null; sleep 5; kill -KILL "$pid" 2>/dev/null ) &
wd=$!
exec 3<&-
wait "$pid"
rc=$?
kill "$wd" 2>/dev/null
exit "$rc"
"#;

/// A running moto server, private to one test; stopped on drop.
pub struct Moto {
    /// `http://127.0.0.1:PORT`, for SDK clients and the provider's `endpoint_url`.
    pub endpoint: String,
    port: u16,
    child: Child,
    /// Dropping this closes the watchdog's pipe, which stops the server.
    watchdog: Option<ChildStdin>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

#[derive(Debug)]
enum StartError {
    /// moto exited saying the port is in use: retry on another port.
    PortTaken,
    /// moto exited for another reason.
    Exited(std::process::ExitStatus),
    /// moto did not answer within [`START_TIMEOUT`].
    Timeout,
}

impl Moto {
    /// Starts moto server on a free 127.0.0.1 port and waits until it answers.
    ///
    /// The program is `$COFFER_MOTO_SERVER` if set, else moto with our
    /// patches (see `moto_program`), running `scripts/install-tools.sh`
    /// first. Panics, with the tail of the server log, if it does not come up
    /// within 30 s.
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// [`Moto::start`] with extra environment for the server, e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0`, which makes moto check credentials
    /// as AWS does.
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let (program, leading_args) = moto_program();
        let log_dir = tempfile::Builder::new().prefix("coffer-moto-").tempdir().expect("create moto log dir");
        let log_path = log_dir.path().join("moto.log");

        let mut attempt = 0;
        loop {
            attempt += 1;
            // The port is free now, but another process may take it before
            // moto binds it; moto then exits and we try another one.
            let port = free_port();
            let (mut child, watchdog) = spawn(&program, &leading_args, env, port, &log_path);
            match wait_ready(&mut child, port, &log_path) {
                Ok(()) => {
                    return Moto {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        port,
                        child,
                        watchdog: Some(watchdog),
                        log_path,
                        _log_dir: log_dir,
                    };
                }
                Err(StartError::PortTaken) if attempt < PORT_ATTEMPTS => {
                    stop(&mut child, Some(watchdog));
                }
                Err(e) => {
                    stop(&mut child, Some(watchdog));
                    panic!(
                        "moto server ({}) did not start on 127.0.0.1:{port} \
                         (attempt {attempt}): {e:?}\n--- {} (tail) ---\n{}",
                        program.display(),
                        log_path.display(),
                        tools::tail_of_file(&log_path, 40),
                    );
                }
            }
        }
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log (HTTP access log plus any Python traceback).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tools::tail_of_file(&self.log_path, lines)
    }

    /// Forgets every resource in every region (`POST /moto-api/reset`).
    pub fn reset(&self) {
        match http_request(self.port, "POST", "/moto-api/reset") {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("moto reset answered HTTP {status}: {body}"),
            Err(e) => panic!("moto reset failed: {e}\n--- log tail ---\n{}", self.log_tail(20)),
        }
    }

    /// An AWS SDK config for this server: static credentials `test`/`test`,
    /// `endpoint_url` = [`Moto::endpoint`], the given region.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        // Everything that matters is explicit, so neither the developer's
        // ~/.aws files nor IMDS can leak in; the remaining defaults (retry,
        // timeouts, HTTP client) are what the product gets too.
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(test_credentials())
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.child, self.watchdog.take());
        if std::thread::panicking() {
            // The test failed: what moto saw is often the explanation.
            eprintln!("--- moto server log tail ({}) ---\n{}", self.endpoint, self.log_tail(40));
        }
    }
}

/// The static credentials moto accepts (it checks none; these keep SDKs quiet).
pub fn test_credentials() -> Credentials {
    Credentials::new(TEST_ACCESS_KEY, TEST_SECRET_KEY, None, None, "coffer-tests")
}

/// How to run moto's server: `$COFFER_MOTO_SERVER` as is, else our launcher
/// `tests/support/moto_server.py` (moto with the AWS behaviours it lacks
/// patched back in) under the project's `.venv/bin/python`, where
/// `scripts/install-tools.sh` installed the pinned moto. Never the system's
/// moto: its version is whatever the machine happens to carry.
fn moto_program() -> (PathBuf, Vec<PathBuf>) {
    if let Some(p) = std::env::var_os("COFFER_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return (PathBuf::from(p), Vec::new());
    }
    tools::ensure_installed();
    let root = tools::repo_root();
    (root.join(".venv/bin/python"), vec![root.join("tests/support/moto_server.py")])
}

/// A port that is free on 127.0.0.1 right now (the kernel picks it).
fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn spawn(
    program: &Path,
    leading_args: &[PathBuf],
    env: &[(&str, &str)],
    port: u16,
    log_path: &Path,
) -> (Child, ChildStdin) {
    let log = std::fs::File::create(log_path).expect("create moto log");
    let log_err = log.try_clone().expect("clone moto log handle");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(program)
        .args(leading_args)
        // Only ever loopback: nothing outside this machine may reach it.
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // Otherwise ~1,300 built-in AMI snapshots show up in
        // DescribeSnapshots(OwnerIds=self), unlike on a real account.
        .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        // So the log is complete when we show its tail.
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
    let watchdog = child.stdin.take().expect("piped stdin");
    (child, watchdog)
}

/// Polls until `GET /moto-api/` (moto's dashboard, served without touching
/// any backend) answers 200 from our own child.
fn wait_ready(child: &mut Child, port: u16, log_path: &Path) -> Result<(), StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        // Checked before the HTTP probe: if our moto died, whatever answers on
        // the port is someone else's server.
        if let Some(status) = child.try_wait().expect("try_wait moto") {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            return Err(if log.contains("Address already in use") || log.contains("is in use") {
                StartError::PortTaken
            } else {
                StartError::Exited(status)
            });
        }
        if let Ok((200, _)) = http_request(port, "GET", "/moto-api/") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StartError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the server: closing the watchdog pipe makes the wrapper TERM moto and
/// exit; if that takes too long, the wrapper is killed (the watchdog, which
/// then sees EOF too, still takes moto down).
fn stop(child: &mut Child, watchdog: Option<ChildStdin>) {
    drop(watchdog);
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A minimal blocking HTTP/1.1 request without a body; returns the status code
/// and the body (headers dropped). Enough for moto's control API.
pub fn http_request(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request_with_body(port, method, path, &[])
}

/// [`http_request`] sending `body` (as `application/octet-stream`).
pub fn http_request_with_body(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let content_type = if body.is_empty() { "" } else { "Content-Type: application/octet-stream\r\n" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {:?}", text.chars().take(100).collect::<String>()),
        )
    })?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}
