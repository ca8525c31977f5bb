//! CPU time and resident memory of a process, from `/proc`.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (fields 14 and 15), the
//! whole process, every thread included: rumqttd runs several. It counts in
//! clock ticks of `USER_HZ`, which Linux fixes at 100 for user space on every
//! mainstream architecture; the crate has no `libc` to ask `sysconf`, so the
//! resolution is 10 ms, 0.3 % of a 3-second run at full load. RSS is `VmRSS`
//! from `/proc/PID/status`. Sleeps are the `voluntary_ctxt_switches` of every
//! thread (`/proc/PID/task/*/status`): how often the process blocked, each
//! time in a poll that found nothing to do. Waking a process that sleeps
//! costs the one that wakes it, on another CPU (an inter-processor
//! interrupt, dear on a virtual machine), so a broker that sleeps often
//! makes its clients pay.

use std::fs;
use std::time::Duration;

/// `USER_HZ`: the unit of the times in `/proc/PID/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub cpu: Duration,
    pub rss_kb: u64,
    /// Voluntary context switches, all threads; `None` if unreadable.
    pub sleeps: Option<u64>,
}

/// Reads process `pid` ("self" for the bench itself).
pub fn sample(pid: &str) -> Result<Sample, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let rss_kb = rss_kb(&status).ok_or_else(|| format!("/proc/{pid}/status: no VmRSS"))?;
    Ok(Sample {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        rss_kb,
        sleeps: sleeps(pid),
    })
}

/// The sum of `voluntary_ctxt_switches` over the threads of `pid`.
fn sleeps(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        // A thread that ended since the directory was listed has no status
        // any more, and no sleeps to add.
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total = total.saturating_add(voluntary_switches(&status).unwrap_or(0));
    }
    Some(total)
}

fn voluntary_switches(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime`. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so fields are counted from the last
/// `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

fn rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let stat = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0 99";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("1234 (x) S 1 2"), None);
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tsol\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\n";
        assert_eq!(rss_kb(status), Some(4321));
        assert_eq!(rss_kb("Name: x\n"), None);
    }

    #[test]
    fn parses_voluntary_switches() {
        let status = "Name:\tsol\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t4\n";
        assert_eq!(voluntary_switches(status), Some(17));
        assert_eq!(voluntary_switches("Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample("self").unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.sleeps.is_some());
        // A sleep is a voluntary context switch. Counted on this thread
        // alone: the harness's other threads may end between two readings
        // of the whole process and take their counts with them.
        let this_thread = || {
            let status = fs::read_to_string("/proc/thread-self/status").unwrap();
            voluntary_switches(&status).unwrap()
        };
        let before = this_thread();
        std::thread::sleep(Duration::from_millis(5));
        assert!(this_thread() > before);
    }
}
