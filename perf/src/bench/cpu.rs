//! The gateway's CPU use per core, from `/proc/<pid>/task/*/stat`.
//!
//! Each sample reads every thread's utime + stime (field 14 + 15, in clock ticks) and the core
//! it last ran on (field 39, `processor`). The difference between two samples is charged to
//! that core: exact for pinned threads (Tandem's dataplane workers), an approximation for
//! threads that migrate. Parsing takes text, so tests use fixture strings.

use std::collections::HashMap;

/// One thread in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSample {
    pub tid: u32,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    pub core: usize,
}

/// Parses one `/proc/<pid>/task/<tid>/stat` line.
pub fn parse_stat(text: &str) -> Option<ThreadSample> {
    let tid = text.split_whitespace().next()?.parse().ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let utime: u64 = f.get(14 - 3)?.parse().ok()?;
    let stime: u64 = f.get(15 - 3)?.parse().ok()?;
    let core: usize = f.get(39 - 3)?.parse().ok()?;
    Some(ThreadSample {
        tid,
        ticks: utime + stime,
        core,
    })
}

/// Reads all threads of `pid` (threads that vanish between listing and reading are skipped).
pub fn sample(pid: u32) -> Vec<ThreadSample> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// Reads all threads of `pid` and of its child processes (Kamailio forks its SIP workers
/// and timers from one main process; tandemd is one process with threads).
pub fn sample_tree(pid: u32) -> Vec<ThreadSample> {
    let mut out = sample(pid);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if parent_of(&text) == Some(pid) {
            out.extend(sample(child));
        }
    }
    out
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line.
pub fn parent_of(text: &str) -> Option<u32> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds used between two samples: (all threads, the busiest thread). Threads that
/// started after `before` count from zero.
pub fn delta_secs(
    before: &[ThreadSample],
    after: &[ThreadSample],
    ticks_per_sec: f64,
) -> (f64, f64) {
    let prev: HashMap<u32, u64> = before.iter().map(|t| (t.tid, t.ticks)).collect();
    let mut total = 0u64;
    let mut busiest = 0u64;
    for t in after {
        let d = t
            .ticks
            .saturating_sub(prev.get(&t.tid).copied().unwrap_or(0));
        total += d;
        busiest = busiest.max(d);
    }
    (total as f64 / ticks_per_sec, busiest as f64 / ticks_per_sec)
}

/// Per-core CPU percent between two samples `secs` apart (`ticks_per_sec` is USER_HZ, 100 on
/// Linux). Index = core id; cores with no thread are 0.
pub fn per_core(
    before: &[ThreadSample],
    after: &[ThreadSample],
    secs: f64,
    ticks_per_sec: f64,
) -> Vec<f64> {
    let prev: HashMap<u32, u64> = before.iter().map(|t| (t.tid, t.ticks)).collect();
    let ncores = after.iter().map(|t| t.core + 1).max().unwrap_or(0);
    let mut out = vec![0.0; ncores];
    if secs <= 0.0 {
        return out;
    }
    for t in after {
        let d = t
            .ticks
            .saturating_sub(prev.get(&t.tid).copied().unwrap_or(t.ticks));
        out[t.core] += d as f64 / ticks_per_sec / secs * 100.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = "4242 (tandemd) S 1 4242 4242 0 -1 4194560 1203 0 0 0 150 30 0 0 20 0 \
                          3 0 1234 100000 500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 \
                          0 0 0 0 0 0 0 0 0 0 0 0 0";
    const STAT_B: &str = "4243 (dp worker 0) R 1 4242 4242 0 -1 4194624 0 0 0 0 900 10 0 0 20 0 \
                          3 0 1240 100000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 -1 0 \
                          0 0 0 0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn parses_ticks_and_core_even_with_spaces_in_the_name() {
        assert_eq!(
            parse_stat(STAT_A),
            Some(ThreadSample {
                tid: 4242,
                ticks: 180,
                core: 1
            })
        );
        assert_eq!(
            parse_stat(STAT_B),
            Some(ThreadSample {
                tid: 4243,
                ticks: 910,
                core: 0
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
    }

    #[test]
    fn deltas_are_charged_to_the_core_each_thread_ran_on() {
        let before = [
            ThreadSample {
                tid: 1,
                ticks: 100,
                core: 0,
            },
            ThreadSample {
                tid: 2,
                ticks: 50,
                core: 1,
            },
        ];
        let after = [
            ThreadSample {
                tid: 1,
                ticks: 150,
                core: 0,
            },
            ThreadSample {
                tid: 2,
                ticks: 150,
                core: 1,
            },
            ThreadSample {
                tid: 3,
                ticks: 999,
                core: 1,
            },
        ];
        let pc = per_core(&before, &after, 2.0, 100.0);
        assert_eq!(pc, vec![25.0, 50.0]);
    }

    #[test]
    fn totals_and_the_busiest_thread() {
        let s = |tid, ticks| ThreadSample {
            tid,
            ticks,
            core: 0,
        };
        let (total, busiest) = delta_secs(
            &[s(1, 100), s(2, 50)],
            &[s(1, 300), s(2, 60), s(3, 40)],
            100.0,
        );
        assert_eq!((total, busiest), (2.5, 2.0));
        assert_eq!(parent_of(STAT_A), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id());
        assert!(!s.is_empty());
    }
}

/// CPU time of the calling thread in ns (`CLOCK_THREAD_CPUTIME_ID`), for benchmarks that time
/// their own loops. Exact at the moment of the call, unlike `/proc/thread-self/schedstat`, which
/// on some kernels advances only at scheduler ticks while the thread runs (seen on a KVM guest:
/// a 1.3 ms busy loop read as 0.08-0.7 ms).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
