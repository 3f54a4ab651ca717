//! The `coffer` binary workers fetch from the catalog (`bin/coffer-linux-<arch>`): what is
//! checked before a build is put there, by `coffer publish` and by the provider.
//!
//! A worker boots Amazon Linux (2023, or 2 on older templates) and runs the published build.
//! A build linked on a newer distribution asks the dynamic loader for glibc symbol versions
//! the instance lacks and dies before its first line of output. So the ELF's version needs
//! (`.gnu.version_r`) are read and a build needing more than [`OLDEST_WORKER_GLIBC`] is
//! refused, with how to make one that does not.

use std::fmt;
use std::io::Read;
use std::path::Path;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader};
use object::{Endianness, ReadCache};
use sha2::{Digest, Sha256};

/// Amazon Linux 2's glibc, the oldest on an instance a worker configuration may launch
/// (Amazon Linux 2023 has 2.34).
pub const OLDEST_WORKER_GLIBC: GlibcVersion = GlibcVersion([2, 26, 0]);

/// How the worker binary that starts on both is built.
pub const BUILD_ADVICE: &str = "build it with scripts/build-worker.sh \
     (cargo zigbuild --target x86_64-unknown-linux-gnu.2.26)";

/// The catalog key workers fetch for `arch` (the boot script asks `uname -m`).
pub fn binary_key(catalog_prefix: &str, arch: WorkerArch) -> String {
    format!("{catalog_prefix}bin/coffer-linux-{arch}")
}

/// The S3 user metadata holding a published binary's SHA-256, so an unchanged build is not
/// uploaded again and Terraform can tell which build workers fetch.
pub const SHA256_METADATA: &str = "coffer-sha256";

/// A glibc symbol version such as `GLIBC_2.2.5` (missing parts are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub [u32; 3]);

impl GlibcVersion {
    /// `GLIBC_2.17` → 2.17; other names (`GLIBC_PRIVATE`, `GCC_3.0`) → None.
    pub fn from_symbol_version(name: &str) -> Option<Self> {
        let mut parts = [0u32; 3];
        let mut count = 0;
        for part in name.strip_prefix("GLIBC_")?.split('.') {
            *parts.get_mut(count)? = part.parse().ok()?;
            count += 1;
        }
        (count >= 2).then_some(Self(parts))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        write!(f, "{major}.{minor}")?;
        if patch != 0 {
            write!(f, ".{patch}")?;
        }
        Ok(())
    }
}

/// The processor a worker binary is built for, spelled as `uname -m` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerArch {
    X86_64,
    Aarch64,
}

impl fmt::Display for WorkerArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerArch::X86_64 => "x86_64",
            WorkerArch::Aarch64 => "aarch64",
        })
    }
}

/// A build that passed [`WorkerBinary::open`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBinary {
    pub path: std::path::PathBuf,
    pub arch: WorkerArch,
    /// The newest glibc symbol version it needs; None for a static build.
    pub glibc: Option<GlibcVersion>,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerBinaryError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a 64-bit Linux ELF executable ({reason}); workers run Linux: {BUILD_ADVICE}")]
    NotLinuxElf { path: String, reason: String },
    #[error("{path} is built for ELF machine {machine}; workers run x86_64 (or aarch64): {BUILD_ADVICE}")]
    UnsupportedMachine { path: String, machine: u16 },
    #[error(
        "{path} needs glibc {needed} (symbol version GLIBC_{needed}), newer than the {OLDEST_WORKER_GLIBC} of \
         Amazon Linux 2: workers could not start it; {BUILD_ADVICE}"
    )]
    GlibcTooNew { path: String, needed: GlibcVersion },
}

impl WorkerBinary {
    /// Reads the ELF header and version needs of `path` (without loading the whole file),
    /// hashes it, and refuses what a worker could not start.
    pub fn open(path: &Path) -> Result<Self, WorkerBinaryError> {
        let shown = path.display().to_string();
        let io = |source| WorkerBinaryError::Io { path: shown.clone(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let (arch, glibc) = inspect(&ReadCache::new(&file), &shown)?;
        if let Some(needed) = glibc.filter(|needed| *needed > OLDEST_WORKER_GLIBC) {
            return Err(WorkerBinaryError::GlibcTooNew { path: shown, needed });
        }
        let sha256 = sha256_of(std::fs::File::open(path).map_err(io)?).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), arch, glibc, sha256, size })
    }
}

fn sha256_of(mut file: std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(format!("{:x}", hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// The ELF's machine and the newest `GLIBC_*` version any of its needed libraries must define.
fn inspect<'data, R: object::ReadRef<'data>>(
    data: R,
    path: &str,
) -> Result<(WorkerArch, Option<GlibcVersion>), WorkerBinaryError> {
    let not_elf = |reason: String| WorkerBinaryError::NotLinuxElf { path: path.to_string(), reason };
    let file = ElfFile64::<Endianness, R>::parse(data).map_err(|e| not_elf(e.to_string()))?;
    let header = file.elf_header();
    let endian = file.endian();
    if header.e_type(endian) != elf::ET_EXEC && header.e_type(endian) != elf::ET_DYN {
        return Err(not_elf("not an executable".into()));
    }
    let arch = match header.e_machine(endian) {
        elf::EM_X86_64 => WorkerArch::X86_64,
        elf::EM_AARCH64 => WorkerArch::Aarch64,
        machine => return Err(WorkerBinaryError::UnsupportedMachine { path: path.to_string(), machine }),
    };
    let sections = file.elf_section_table();
    let Some((mut needs, link)) = sections.gnu_verneed(endian, data).map_err(|e| not_elf(e.to_string()))? else {
        return Ok((arch, None));
    };
    let strings = sections.strings(endian, data, link).map_err(|e| not_elf(e.to_string()))?;
    let mut newest = None;
    while let Some((_library, mut versions)) = needs.next().map_err(|e| not_elf(e.to_string()))? {
        while let Some(version) = versions.next().map_err(|e| not_elf(e.to_string()))? {
            let name = version.name(endian, strings).map_err(|e| not_elf(e.to_string()))?;
            let found = std::str::from_utf8(name).ok().and_then(GlibcVersion::from_symbol_version);
            newest = newest.max(found);
        }
    }
    Ok((arch, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_order_by_number_not_by_text() {
        let v = |s| GlibcVersion::from_symbol_version(s).unwrap();
        assert!(v("GLIBC_2.26") > v("GLIBC_2.3"));
        assert!(v("GLIBC_2.2.5") < v("GLIBC_2.3"));
        assert!(v("GLIBC_2.26") == OLDEST_WORKER_GLIBC);
        assert_eq!(v("GLIBC_2.2.5").to_string(), "2.2.5");
        assert_eq!(v("GLIBC_2.34").to_string(), "2.34");
        for other in ["GLIBC_PRIVATE", "GCC_3.0", "GLIBC_2", "GLIBC_2.x", "GLIBC_1.2.3.4"] {
            assert_eq!(GlibcVersion::from_symbol_version(other), None, "{other}");
        }
    }

    /// This test binary is linked on the build machine; on a distribution newer than Amazon
    /// Linux 2 (this project's Debian needs 2.34 and more) it is what `coffer publish` refuses.
    #[test]
    fn a_build_needing_a_newer_glibc_than_amazon_linux_2_is_refused_naming_the_version() {
        let this = std::env::current_exe().unwrap();
        let data = std::fs::read(&this).unwrap();
        let (arch, glibc) = inspect(&*data, "this").unwrap();
        assert_eq!(arch.to_string(), std::env::consts::ARCH);
        let needed = glibc.expect("a dynamically linked test binary needs glibc");
        if needed > OLDEST_WORKER_GLIBC {
            let refused = WorkerBinary::open(&this).unwrap_err().to_string();
            assert!(refused.contains(&format!("needs glibc {needed}")), "{refused}");
            assert!(refused.contains("scripts/build-worker.sh"), "{refused}");
        }
    }

    #[test]
    fn a_build_for_another_processor_is_refused_naming_its_machine() {
        let mut data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // e_machine, at offset 18 of the ELF header, little-endian on x86_64 and aarch64.
        data[18..20].copy_from_slice(&elf::EM_RISCV.to_le_bytes());
        let refused = inspect(&*data, "coffer-riscv").unwrap_err().to_string();
        assert!(refused.starts_with("coffer-riscv is built for ELF machine 243; workers run x86_64"), "{refused}");
    }

    #[test]
    fn what_is_not_a_linux_executable_is_refused_as_such() {
        let dir = std::env::temp_dir().join(format!("coffer-worker-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("coffer");
        std::fs::write(&script, "#!/bin/sh\necho not a build\n").unwrap();
        let refused = WorkerBinary::open(&script).unwrap_err().to_string();
        assert!(refused.contains("is not a 64-bit Linux ELF executable"), "{refused}");
        let missing = WorkerBinary::open(&dir.join("absent")).unwrap_err().to_string();
        assert!(missing.starts_with("reading "), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
