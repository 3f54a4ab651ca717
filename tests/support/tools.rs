//! Locating the repository and making sure the external tools the acceptance
//! tests drive (moto server, terraform 1.0.3) are installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the directory holding `Cargo.toml`, `scripts/`, `tests/`).
pub fn repo_root() -> PathBuf {
    // The test target belongs to the `provider` crate, so its manifest dir is
    // `<root>/provider`; resolving at compile time keeps this independent of the
    // directory the test binary is started from.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("provider crate has a parent directory").to_path_buf()
}

/// Runs `scripts/install-tools.sh` once per test process; panics with its
/// output if it fails. Every later call returns at once (or panics again).
pub fn ensure_installed() {
    // The result (not just "done") is cached so that a failure is reported to
    // every test that needs the tools, not only to the first one.
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let script = repo_root().join("scripts/install-tools.sh");
        let output = Command::new("bash")
            .arg(&script)
            .current_dir(repo_root())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// The first executable file named `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).filter(|dir| !dir.as_os_str().is_empty()).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// The last `max_lines` lines of a (log) file, for panic messages; never fails.
pub fn tail_of_file(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The worker build (`scripts/build-worker.sh`: Linux x86_64 against glibc 2.26), built once
/// per test process; cargo makes it a no-op when nothing changed. `make test` builds it before
/// the tests, so a test only waits for it when run alone after an edit.
pub fn worker_build() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        ensure_installed();
        let output = Command::new("bash")
            .arg(repo_root().join("scripts/build-worker.sh"))
            .current_dir(repo_root())
            .output()
            .map_err(|e| format!("cannot run scripts/build-worker.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/build-worker.sh failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    });
    built.clone().unwrap_or_else(|message| panic!("{message}"))
}

/// A tiny program linked by the pinned zig against glibc `glibc` (e.g. "2.17"), in `dir`: a
/// build that passes or fails the worker binary check in a second instead of a full coffer.
pub fn small_elf_needing_glibc(dir: &Path, glibc: &str) -> PathBuf {
    ensure_installed();
    let source = dir.join("hello.c");
    std::fs::write(&source, "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n").unwrap();
    let binary = dir.join(format!("hello-glibc-{glibc}"));
    let output = Command::new(repo_root().join(".venv-zig/bin/python"))
        .args(["-m", "ziglang", "cc", "-target", &format!("x86_64-linux-gnu.{glibc}"), "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run zig cc");
    assert!(output.status.success(), "zig cc: {}", String::from_utf8_lossy(&output.stderr));
    binary
}

/// The newest `GLIBC_x.y` symbol version an ELF needs, as binutils' `readelf -V` lists its
/// version needs: a reader independent of the one `coffer publish` uses.
pub fn newest_glibc_needed(binary: &Path) -> Option<(u32, u32, u32)> {
    let output = Command::new("readelf").args(["-V", "--wide"]).arg(binary).output().expect("run readelf");
    assert!(output.status.success(), "readelf: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
}
