//! Measuring a child process from a benchmark: its peak RSS (VmHWM,
//! sampled), CPU time from /proc, and output drained on threads so a full
//! pipe never stalls it. Shared by the benches (`#[path]`-included).

#![allow(dead_code)]

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the child's VmHWM is read.
pub const RSS_POLL: Duration = Duration::from_millis(20);

pub fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// Reads a process's VmHWM every [`RSS_POLL`] until stopped. VmHWM is the
/// kernel's high-water mark of the resident set: it only ever grows, so the
/// last value read before the process exits is its peak RSS over the whole
/// run (short of growth in its last ≤ 20 ms, which is tear-down).
pub struct HwmSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl HwmSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak_kib) = (stop.clone(), peak_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Absent once the process has exited (a zombie has no
                    // memory map): the last value read stands.
                    match vm_hwm_kib(pid) {
                        Some(kib) => peak_kib.store(kib, Ordering::Relaxed),
                        None => return,
                    }
                    std::thread::sleep(RSS_POLL);
                }
            })
        };
        Self { stop, peak_kib, thread }
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

// ------------------------------------------------------------- CPU from /proc

pub const TICK: Duration = Duration::from_millis(10); // CLK_TCK = 100 on Linux

/// `/proc/PID/stat` fields after the command name (field 3 onwards).
pub fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 3 (state) is a letter; the rest are numbers.
    Some(rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect())
}

/// utime + stime of a process.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let f = stat_fields(&pid.to_string())?;
    Some(TICK * (f[10] + f[11]) as u32)
}

/// cutime + cstime of this process: the children it has waited for. Only
/// the coffer runs are waited for while the bench runs.
pub fn children_cpu() -> Duration {
    let f = stat_fields("self").unwrap();
    TICK * (f[12] + f[13]) as u32
}

/// The Python process serving moto on `port` (the `Moto` child is a shell
/// wrapper around it).
pub fn moto_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_moto = args.first().is_some_and(|a| a.windows(6).any(|w| w == b"python"))
            && args.iter().any(|a| a.windows(4).any(|w| w == b"moto"))
            && args.windows(2).any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
        is_moto.then_some(pid)
    })
}
