//! A container's cgroup as the server reads it: where its controllers' files are (found
//! from its init process's `/proc/PID/cgroup`, so cgroup v1, v2, hybrid, cgroupfs and
//! systemd layouts all work) and one cheap reading of its usage. Invariant: only reads
//! small pseudo-files; never writes a cgroup, never spawns a process.

use std::io;
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests;

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directories of one container's cgroup, per controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// cgroup v1 (or hybrid with the controllers on v1): one directory per controller.
    V1 {
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    /// cgroup v2: one directory for every controller.
    V2(PathBuf),
}

/// One reading of a cgroup's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Scheduler periods elapsed and periods in which the quota ran out.
    pub periods: u64,
    pub throttled_periods: u64,
    /// Length of a scheduler period in microseconds (0: unknown).
    pub period_us: u64,
    /// Memory in use without the page cache the kernel can drop (as `docker stats`).
    pub memory_bytes: u64,
    /// `None`: no limit.
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// Forks refused at the pids limit since the container started.
    pub pids_limit_hits: u64,
}

impl Cgroup {
    /// The cgroup of a process from its `/proc/PID/cgroup` text, under `root` (normally
    /// `/sys/fs/cgroup`). v1 controllers win over the unified hierarchy where both exist.
    pub fn from_proc(proc_cgroup: &str, root: &Path) -> Option<Cgroup> {
        let (mut cpu, mut cpuacct, mut memory, mut pids) = (None, None, None, None);
        let mut unified = None;
        for line in proc_cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(hierarchy), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let relative = path.trim().trim_start_matches('/');
            if hierarchy == "0" && controllers.is_empty() {
                unified = Some(root.join(relative));
                continue;
            }
            // A co-mounted v1 hierarchy is mounted at its controllers' joined names
            // (`cpu,cpuacct`).
            let dir = root.join(controllers).join(relative);
            for controller in controllers.split(',') {
                let slot = match controller {
                    "cpu" => &mut cpu,
                    "cpuacct" => &mut cpuacct,
                    "memory" => &mut memory,
                    "pids" => &mut pids,
                    _ => continue,
                };
                *slot = Some(dir.clone());
            }
        }
        if cpu.is_some() || cpuacct.is_some() || memory.is_some() || pids.is_some() {
            return Some(Cgroup::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
            });
        }
        unified.map(Cgroup::V2)
    }

    /// Whether every directory names the container (a process that left its cgroup, or
    /// an engine that sees other processes than we do, gives someone else's).
    pub fn names(&self, container_id: &str) -> bool {
        let named = |dir: &Option<PathBuf>| {
            dir.as_ref()
                .is_none_or(|d| d.to_string_lossy().contains(container_id))
        };
        match self {
            Cgroup::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
            } => named(cpu) && named(cpuacct) && named(memory) && named(pids),
            Cgroup::V2(dir) => dir.to_string_lossy().contains(container_id),
        }
    }

    /// The `pids.events` file (the count of forks refused at the limit).
    pub fn pids_events(&self) -> Option<PathBuf> {
        match self {
            Cgroup::V1 { pids, .. } => pids.as_ref().map(|d| d.join("pids.events")),
            Cgroup::V2(dir) => Some(dir.join("pids.events")),
        }
    }

    /// Reads every counter. Fails when the cgroup is gone (the container ended); a
    /// controller that is not there reads as zero.
    pub fn read(&self) -> io::Result<Reading> {
        let mut r = Reading::default();
        match self {
            Cgroup::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
            } => {
                if let Some(dir) = cpuacct {
                    r.cpu_ns = read_u64(&dir.join("cpuacct.usage"))?.unwrap_or(0);
                }
                if let Some(dir) = cpu {
                    let stat = read(&dir.join("cpu.stat"))?;
                    r.periods = field(&stat, "nr_periods").unwrap_or(0);
                    r.throttled_periods = field(&stat, "nr_throttled").unwrap_or(0);
                    r.period_us = read_u64(&dir.join("cpu.cfs_period_us"))?.unwrap_or(0);
                }
                if let Some(dir) = memory {
                    let usage = read_u64(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0);
                    let stat = read(&dir.join("memory.stat"))?;
                    let inactive = field(&stat, "total_inactive_file").unwrap_or(0);
                    r.memory_bytes = usage.saturating_sub(inactive);
                    // v1 says "no limit" with a huge number (a page-rounded i64::MAX).
                    r.memory_limit =
                        read_u64(&dir.join("memory.limit_in_bytes"))?.filter(|&l| l < (1 << 62));
                }
                if let Some(dir) = pids {
                    read_pids(dir, &mut r)?;
                }
            }
            Cgroup::V2(dir) => {
                let stat = read(&dir.join("cpu.stat"))?;
                r.cpu_ns = field(&stat, "usage_usec").unwrap_or(0) * 1000;
                r.periods = field(&stat, "nr_periods").unwrap_or(0);
                r.throttled_periods = field(&stat, "nr_throttled").unwrap_or(0);
                // `cpu.max` is "QUOTA PERIOD" (QUOTA may be "max").
                r.period_us = read(&dir.join("cpu.max"))
                    .ok()
                    .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
                    .unwrap_or(0);
                let usage = read_u64(&dir.join("memory.current"))?.unwrap_or(0);
                let inactive = read(&dir.join("memory.stat"))
                    .ok()
                    .and_then(|s| field(&s, "inactive_file"))
                    .unwrap_or(0);
                r.memory_bytes = usage.saturating_sub(inactive);
                r.memory_limit = read_u64(&dir.join("memory.max"))?;
                read_pids(dir, &mut r)?;
            }
        }
        Ok(r)
    }
}

fn read_pids(dir: &Path, r: &mut Reading) -> io::Result<()> {
    r.pids = read_u64(&dir.join("pids.current"))?.unwrap_or(0);
    r.pids_limit = read_u64(&dir.join("pids.max"))?;
    r.pids_limit_hits = read(&dir.join("pids.events"))
        .ok()
        .and_then(|text| pids_limit_hits(&text))
        .unwrap_or(0);
    Ok(())
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// A file of one number; `None` for `max` (no limit) or text that is not a number.
fn read_u64(path: &Path) -> io::Result<Option<u64>> {
    Ok(read(path)?.trim().parse().ok())
}

/// The value of `name` in a flat-keyed file (`name value` per line).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The `max N` field of a `pids.events` file: how often a fork failed at the limit.
pub fn pids_limit_hits(text: &str) -> Option<u64> {
    field(text, "max")
}
