//! The process's own metrics under their conventional names (the ones
//! every Prometheus client library exports: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, ...), read from `/proc/self` at each
//! scrape, and `widget_host_build_info`. The `prometheus-client` crate has
//! no process collector; on a system without `/proc` they are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;

/// What `/proc/self` says of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Readings {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: u64,
}

/// `/proc/self/stat`'s fields after the command name (which may hold
/// spaces and parentheses: it ends at the last `)`), with the clock's ticks
/// per second, the page size and the boot time from `/proc/stat`.
fn parse(stat: &str, ticks: f64, page: u64, boot_time: f64, open_fds: u64) -> Option<Readings> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    // Field 3 of proc(5) (the state) is fields[0].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Readings {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot_time + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds,
    })
}

fn read() -> Option<Readings> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // SAFETY: sysconf only reads configuration.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    parse(
        &stat,
        ticks.max(1) as f64,
        page.max(1) as u64,
        boot_time,
        open_fds,
    )
}

/// The process metrics and the build's, encoded at each scrape.
#[derive(Debug)]
pub(super) struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let build = ConstGauge::new(1i64);
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        build.encode(
            encoder
                .encode_descriptor(
                    "widget_host_build_info",
                    "The build: its version as label, value 1",
                    None,
                    build.metric_type(),
                )?
                .encode_family(&labels)?,
        )?;
        let Some(now) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(now.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                now.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                now.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                now.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                now.open_fds as f64,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read_past_a_command_name_with_spaces_and_parentheses() {
        // proc(5)'s fields 1 to 24: utime 250, stime 150 ticks, start 1000
        // ticks after boot, 4 MiB virtual, 300 pages resident.
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 1000 4194304 300 18446744073709551615";
        let readings = parse(stat, 100.0, 4096, 1_700_000_000.0, 12).unwrap();
        assert_eq!(readings.cpu_seconds, 4.0);
        assert_eq!(readings.start_time_seconds, 1_700_000_010.0);
        assert_eq!(readings.virtual_bytes, 4 << 20);
        assert_eq!(readings.resident_bytes, 300 * 4096);
        assert_eq!(readings.open_fds, 12);
        assert!(read().is_some(), "this process's own /proc is readable");
    }
}
