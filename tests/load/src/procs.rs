//! CPU time and memory of the processes under load, from `/proc`, so each service's cost is
//! measured by the kernel's own accounting (all threads of the process) rather than estimated.

use std::path::Path;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reading {
    /// User + system CPU time of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start, KiB.
    pub hwm_kib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} has no {what}")]
    Format { path: String, what: &'static str },
}

/// utime + stime from the text of `/proc/<pid>/stat` (fields 14 and 15; the command name in
/// field 2 may contain spaces and parentheses, so fields are counted after its last `)`).
pub fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')' comes field 3 (state); utime is field 14, i.e. the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS`.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read { path: path.to_string(), source })
}

/// Reads process `pid` now.
pub fn read_pid(pid: u32) -> Result<Reading, ProcError> {
    let stat_path = format!("/proc/{pid}/stat");
    let status_path = format!("/proc/{pid}/status");
    let cpu_ticks =
        cpu_ticks_from_stat(&read(&stat_path)?).ok_or(ProcError::Format { path: stat_path, what: "utime/stime" })?;
    let status = read(&status_path)?;
    let rss_kib = status_kib(&status, "VmRSS").ok_or(ProcError::Format { path: status_path.clone(), what: "VmRSS" })?;
    let hwm_kib = status_kib(&status, "VmHWM").unwrap_or(rss_kib);
    Ok(Reading { cpu_ticks, rss_kib, hwm_kib })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The pid in a pid file (as deploy/local writes them), if it names a live process.
pub fn pid_from_file(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 100 123456789 5000 18446744073709551615";
        assert_eq!(cpu_ticks_from_stat(stat), Some(325));
        assert_eq!(cpu_ticks_from_stat("garbage"), None);
    }

    #[test]
    fn status_lines_in_kib() {
        let status = "Name:\tingest\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        let r = read_pid(std::process::id()).unwrap();
        assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib, "{r:?}");
        assert!(ticks_per_second() > 0);
    }
}
