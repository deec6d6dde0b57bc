//! How much memory this process may still use: the least of the machine's
//! available memory, its cgroup's limit and its address-space limit
//! (`ulimit -v`). Default cell limits are made from it, so that a run that
//! cannot fit is refused up front instead of killed by the kernel or
//! aborted by the allocator.

/// Bytes this process may still allocate: the least of `MemAvailable`
/// (/proc/meminfo), the cgroup's limit less its usage (cgroup v2
/// `memory.max`/`memory.current`, else v1 `memory.limit_in_bytes`/
/// `memory.usage_in_bytes`) and the address-space limit less the address
/// space in use (`ulimit -v`: /proc/self/limits and `VmSize`). 8 GiB when
/// none of them can be read (not Linux).
pub fn available_bytes() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut least: Option<u64> = None;
    let mut consider = |v: Option<u64>| {
        if let Some(v) = v {
            least = Some(least.map_or(v, |l| l.min(v)));
        }
    };
    consider(read("/proc/meminfo").and_then(|t| kib_field(&t, "MemAvailable:")));
    let cgroup = |limit: &str, usage: &str| {
        let limit = read(limit).and_then(|t| limit_value(&t))?;
        let usage = read(usage)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Some(limit.saturating_sub(usage))
    };
    consider(
        cgroup("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current").or_else(|| {
            cgroup(
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            )
        }),
    );
    let address_space = read("/proc/self/limits").and_then(|t| address_space_limit(&t));
    let in_use = read("/proc/self/status").and_then(|t| kib_field(&t, "VmSize:"));
    consider(address_space.map(|limit| limit.saturating_sub(in_use.unwrap_or(0))));
    least.unwrap_or(8 << 30)
}

/// A `Name:   1234 kB` field of /proc/meminfo or /proc/self/status, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A cgroup limit file's value: bytes, or `None` for `max` (no limit) and
/// v1's "unlimited" (a number near 2^63).
fn limit_value(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 60).then_some(v)
}

/// The soft "Max address space" of /proc/self/limits in bytes, `None` when
/// unlimited.
fn address_space_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(kib_field(meminfo, "MemAvailable:"), Some(12_000_000 * 1024));
        assert_eq!(kib_field(meminfo, "VmSize:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         4096000000           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(4_096_000_000));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("9223372036854771712\n"), None);
        assert_eq!(limit_value("2147483648\n"), Some(2 << 30));
    }

    #[test]
    fn the_budget_is_positive_and_at_most_the_available_memory() {
        let budget = available_bytes();
        assert!(budget > 0);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        // MemAvailable moves between the two reads: allow 1 GiB of drift.
        assert!(budget <= kib_field(&meminfo, "MemAvailable:").unwrap() + (1 << 30));
    }
}
