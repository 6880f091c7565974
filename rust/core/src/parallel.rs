//! The thread pool every operation runs on.
//!
//! Sized by `PREFKIT_NUM_THREADS`; when it is unset, by the CPUs this process may use: the
//! cores it may run on, capped by the CPU quota of its cgroup (v2 `cpu.max`, v1
//! `cpu.cfs_quota_us / cpu.cfs_period_us`, the tightest of the cgroup and its ancestors), so a
//! container limited to 2 CPUs on a 64-core host runs 2 threads instead of 64 that the kernel
//! throttles. A pool's threads do not survive `fork` (DataLoader workers, multiprocessing), so
//! the pool is keyed by process id and rebuilt in a child instead of dead-locking on threads
//! that no longer exist.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn threads_from_env() -> Option<usize> {
    std::env::var("PREFKIT_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// The pool size when `PREFKIT_NUM_THREADS` is unset: the cores this process may run on
/// (affinity included), at most its cgroup's CPU quota.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cgroup_cpu_limit().map_or(cores, |quota| quota.min(cores))
}

/// CPUs allowed by a cgroup v2 `cpu.max` file ("$MAX $PERIOD", or "max $PERIOD" for no
/// limit), rounded up: `ceil(max / period)`. None for no limit or unreadable contents.
///
/// ```
/// use prefkit_core::parallel::cpus_from_cpu_max;
/// assert_eq!(cpus_from_cpu_max("150000 100000\n"), Some(2));
/// assert_eq!(cpus_from_cpu_max("max 100000\n"), None);
/// ```
pub fn cpus_from_cpu_max(contents: &str) -> Option<usize> {
    let mut fields = contents.split_whitespace();
    let quota = fields.next()?;
    // The period is optional in what the kernel accepts on write; it reads back as 100000.
    let period = fields.next().unwrap_or("100000");
    cpus_from_quota(quota, period)
}

/// CPUs allowed by cgroup v1 `cpu.cfs_quota_us` (-1 for no limit) and `cpu.cfs_period_us`,
/// rounded up. None for no limit or unreadable contents.
///
/// ```
/// use prefkit_core::parallel::cpus_from_cfs;
/// assert_eq!(cpus_from_cfs("50000\n", "100000\n"), Some(1));
/// assert_eq!(cpus_from_cfs("-1\n", "100000\n"), None);
/// ```
pub fn cpus_from_cfs(quota: &str, period: &str) -> Option<usize> {
    cpus_from_quota(quota.trim(), period.trim())
}

fn cpus_from_quota(quota: &str, period: &str) -> Option<usize> {
    let quota = quota.parse::<u64>().ok().filter(|&q| q > 0)?;
    let period = period.parse::<u64>().ok().filter(|&p| p > 0)?;
    usize::try_from(quota.div_ceil(period))
        .ok()
        .map(|n| n.max(1))
}

/// Which cgroup files limit the CPU: v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The cgroup folders that hold this process's CPU limit, from the contents of
/// `/proc/self/cgroup` and `/proc/self/mountinfo`: for each hierarchy (v2, and v1's `cpu`
/// controller), the mount point of the hierarchy and the process's folder under it.
/// A cgroup path outside the mounted root (a container seeing only its own subtree) maps to
/// the mount point itself.
pub fn cgroup_folders(cgroup: &str, mountinfo: &str) -> Vec<(CgroupVersion, PathBuf, PathBuf)> {
    let mut found = Vec::new();
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let version = if controllers.is_empty() {
            CgroupVersion::V2
        } else if controllers.split(',').any(|c| c == "cpu") {
            CgroupVersion::V1
        } else {
            continue;
        };
        if let Some((root, mount)) = mount_of(mountinfo, version) {
            let relative = Path::new(path)
                .strip_prefix(&root)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            found.push((version, mount.clone(), mount.join(relative)));
        }
    }
    found
}

/// The root (inside the hierarchy) and mount point of the cgroup hierarchy of `version`
/// (v1: the one with the `cpu` controller), from `/proc/self/mountinfo`.
fn mount_of(mountinfo: &str, version: CgroupVersion) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // "id parent major:minor root mount-point options [optional...] - fstype source super"
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let matches = match version {
            CgroupVersion::V2 => right.first() == Some(&"cgroup2"),
            CgroupVersion::V1 => {
                right.first() == Some(&"cgroup")
                    && right
                        .get(2)
                        .is_some_and(|options| options.split(',').any(|o| o == "cpu"))
            }
        };
        (matches && left.len() >= 5).then(|| (PathBuf::from(left[3]), PathBuf::from(left[4])))
    })
}

/// The tightest CPU quota of the folder and its ancestors up to the mount point.
fn quota_of(version: CgroupVersion, mount: &Path, folder: &Path) -> Option<usize> {
    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    folder
        .ancestors()
        .take_while(|dir| dir.starts_with(mount))
        .filter_map(|dir| match version {
            CgroupVersion::V2 => cpus_from_cpu_max(&read(dir.join("cpu.max"))?),
            CgroupVersion::V1 => cpus_from_cfs(
                &read(dir.join("cpu.cfs_quota_us"))?,
                &read(dir.join("cpu.cfs_period_us"))?,
            ),
        })
        .min()
}

/// The CPU quota of this process's cgroups, None where there is none (or no cgroups: not
/// Linux, or /proc not mounted).
pub fn cgroup_cpu_limit() -> Option<usize> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_folders(&cgroup, &mountinfo)
        .iter()
        .filter_map(|(version, mount, folder)| quota_of(*version, mount, folder))
        .min()
}

/// The pool for this process, built on first use (and again after a `fork`).
pub fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    // A poisoned lock only means another thread panicked while holding it; the Option inside
    // is still consistent.
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return pool.clone();
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // A pool inherited through fork lost its threads; dropping it would wait on them
        // forever, so it is leaked instead.
        std::mem::forget(inherited);
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads_from_env().unwrap_or_else(default_threads))
            .thread_name(|i| format!("prefkit-{i}"))
            .build()
            .expect("building a rayon pool only fails when threads cannot be spawned"),
    );
    *slot = Some((pid, pool.clone()));
    pool
}

/// The number of threads of this process's pool.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Run `work` on the pool.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    pool().install(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_rounds_up_and_reads_no_limit() {
        assert_eq!(cpus_from_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(cpus_from_cpu_max("250000 100000"), Some(3));
        assert_eq!(cpus_from_cpu_max("1000 100000"), Some(1));
        assert_eq!(cpus_from_cpu_max("50000"), Some(1));
        assert_eq!(cpus_from_cpu_max("max 100000\n"), None);
        assert_eq!(cpus_from_cpu_max(""), None);
        assert_eq!(cpus_from_cpu_max("100000 0"), None);
    }

    #[test]
    fn cfs_quota_rounds_up_and_reads_no_limit() {
        assert_eq!(cpus_from_cfs("400000\n", "100000\n"), Some(4));
        assert_eq!(cpus_from_cfs("150000", "100000"), Some(2));
        assert_eq!(cpus_from_cfs("-1\n", "100000\n"), None);
        assert_eq!(cpus_from_cfs("garbage", "100000"), None);
    }

    const MOUNTINFO: &str = "\
24 29 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 24 0:27 /kubepods/pod1 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
32 24 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn folders_of_v2_and_v1_hierarchies() {
        let cgroup = "0::/user.slice/job\n4:memory:/x\n3:cpu,cpuacct:/kubepods/pod1/c1\n";
        let folders = cgroup_folders(cgroup, MOUNTINFO);
        assert_eq!(
            folders,
            vec![
                (
                    CgroupVersion::V2,
                    PathBuf::from("/sys/fs/cgroup"),
                    PathBuf::from("/sys/fs/cgroup/user.slice/job")
                ),
                (
                    CgroupVersion::V1,
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c1")
                ),
            ]
        );
    }

    #[test]
    fn a_path_outside_the_mounted_root_is_the_mount_point() {
        let folders = cgroup_folders("3:cpu,cpuacct:/elsewhere\n", MOUNTINFO);
        assert_eq!(folders[0].2, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(cgroup_folders("4:memory:/x\n", MOUNTINFO).is_empty());
    }

    #[test]
    fn the_tightest_ancestor_quota_wins() {
        let mount = std::env::temp_dir().join(format!("prefkit-cgroup-{}", std::process::id()));
        let job = mount.join("slice").join("job");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(mount.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(mount.join("slice").join("cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(job.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(quota_of(CgroupVersion::V2, &mount, &job), Some(3));
        std::fs::write(job.join("cpu.max"), "120000 100000\n").unwrap();
        assert_eq!(quota_of(CgroupVersion::V2, &mount, &job), Some(2));
        std::fs::remove_dir_all(&mount).unwrap();
    }

    #[test]
    fn the_pool_has_at_least_one_thread() {
        assert!(default_threads() >= 1);
        assert!(num_threads() >= 1);
    }
}
