//! Peak memory of a training run: what a researcher needs to know before trying a bigger
//! model or batch on the same machine.
//!
//! Two figures, each only where it can be measured:
//! - the **device** allocator's reserved bytes (GPU backends report their memory pools),
//!   sampled after every micro-batch's forward pass — the moment its autodiff graph, and so
//!   the step's memory, is largest;
//! - the **process**'s peak resident memory (Linux `VmHWM`), reset when the run starts so it
//!   covers this run only. On the CPU this is where the tensors live.

use std::cell::Cell;
use std::sync::OnceLock;

use burn::tensor::Device;
use peakmem_alloc::PeakMemAllocTrait;
use serde::{Deserialize, Serialize};

/// The binary's instrumented global allocator (`main.rs`), when installed.
static HEAP_METER: OnceLock<&'static (dyn PeakMemAllocTrait + Sync)> = OnceLock::new();

/// Hands the library the program's instrumented allocator, so it can measure what a piece of
/// work allocates ([`heap_peak_of`]). Without it (tests, other binaries) nothing is measured.
pub fn install_heap_meter(meter: &'static (dyn PeakMemAllocTrait + Sync)) {
    let _ = HEAP_METER.set(meter);
}

/// Whether [`heap_peak_of`] can measure (the program installed its allocator's meter).
pub fn heap_meter_installed() -> bool {
    HEAP_METER.get().is_some()
}

/// Runs `work` and returns the most heap memory it had allocated at once, beyond what was
/// allocated when it started (bytes; `None` without an installed meter). Other threads'
/// allocations in the meantime count too.
pub fn heap_peak_of<T>(work: impl FnOnce() -> T) -> (T, Option<u64>) {
    let Some(meter) = HEAP_METER.get() else {
        return (work(), None);
    };
    meter.reset_peak_memory();
    let out = work();
    (out, Some(meter.get_peak_memory() as u64))
}

/// The heap a training pass's forward graph held at 1 and at 2 images (bytes): the
/// activations autodiff keeps for the backward pass grow linearly with the images in a pass,
/// so the two points give any pass's (`engine::memory_fit`, `pretrain`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassMemory {
    pub one: u64,
    pub two: u64,
}

impl PassMemory {
    /// What each further image in a pass adds.
    pub fn per_image(&self) -> u64 {
        self.two.saturating_sub(self.one)
    }

    /// The most images one pass can take with `held` bytes on top and `available` bytes
    /// left (`None` when not even one fits).
    pub fn most_images(&self, held: u64, available: u64) -> Option<usize> {
        let room = available.checked_sub(self.one.saturating_add(held))?;
        Some(match self.per_image() {
            0 => usize::MAX,
            per_image => usize::try_from(room / per_image).unwrap_or(usize::MAX - 1) + 1,
        })
    }

    /// A pass of `images` (linear through the two measurements).
    pub fn at(&self, images: usize) -> u64 {
        self.one + self.per_image() * (images.max(1) as u64 - 1)
    }
}

/// Peak memory of one run, as recorded in `run.json` (`peak_memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// Largest reserved size of the device's memory pools seen after a forward pass (bytes);
    /// `None` where the backend reports no pools (burn-flex on the CPU).
    pub device_reserved_bytes: Option<u64>,
    /// The process's peak resident set since the run started (bytes; Linux only). In the
    /// workbench it includes the window's own memory.
    pub process_peak_rss_bytes: Option<u64>,
}

impl MemoryReport {
    /// `"device 3.2 GiB reserved, process 1.1 GiB resident"`, or `None` when nothing was
    /// measurable.
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.device_reserved_bytes
                .map(|b| format!("device {} reserved", gib(b))),
            self.process_peak_rss_bytes
                .map(|b| format!("process {} resident", gib(b))),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// `bytes` in GiB (MiB below one GiB), for messages.
pub fn gib(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// The running maximum of the device's pool size, updated by [`PeakMemory::sample`].
#[derive(Debug, Default)]
pub struct PeakMemory {
    device_reserved: Cell<Option<u64>>,
}

impl PeakMemory {
    /// Starts measuring: resets the process's peak resident set where the OS allows it.
    pub fn start() -> Self {
        reset_process_peak();
        Self::default()
    }

    /// Notes the device allocator's current reserved size (a device sync on GPU backends).
    pub fn sample(&self, device: &Device) {
        if let Some(usage) = device.memory_pool_usage() {
            let peak = self
                .device_reserved
                .get()
                .unwrap_or(0)
                .max(usage.bytes_reserved);
            self.device_reserved.set(Some(peak));
        }
    }

    pub fn report(&self) -> MemoryReport {
        MemoryReport {
            device_reserved_bytes: self.device_reserved.get(),
            process_peak_rss_bytes: process_peak_rss(),
        }
    }
}

/// Linux: writing 5 to `/proc/self/clear_refs` resets `VmHWM` to the current resident size.
/// Elsewhere (or when refused) the process peak covers the whole process lifetime.
fn reset_process_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` of `/proc/self/status`, in bytes.
pub fn process_peak_rss() -> Option<u64> {
    status_field("VmHWM:")
}

/// `VmRSS` of `/proc/self/status`, in bytes.
pub fn process_rss() -> Option<u64> {
    status_field("VmRSS:")
}

/// `MemAvailable` of `/proc/meminfo`, in bytes: what the process can still allocate without
/// swapping.
pub fn available_memory() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

fn status_field(name: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, name)
}

/// A `Name:   1234 kB` line's value in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let text = "VmPeak:\t  200 kB\nVmHWM:\t    1536 kB\n";
        assert_eq!(kib_field(text, "VmHWM:"), Some(1536 * 1024));
        assert_eq!(kib_field(text, "VmRSS:"), None);
    }

    #[test]
    fn process_peak_follows_an_allocation() {
        if process_rss().is_none() {
            return; // not Linux
        }
        let peak = PeakMemory::start();
        let before = peak.report().process_peak_rss_bytes.unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak.report().process_peak_rss_bytes.unwrap();
        assert!(
            after >= before + (60 << 20),
            "peak {after} after touching 64 MiB, {before} before"
        );
        drop(block);
    }

    #[test]
    fn describes_what_was_measured() {
        let r = MemoryReport {
            device_reserved_bytes: None,
            process_peak_rss_bytes: Some(3 << 29),
        };
        assert_eq!(r.describe().unwrap(), "process 1.50 GiB resident");
        assert_eq!(MemoryReport::default().describe(), None);
    }

    #[test]
    fn the_most_images_a_pass_takes_fill_the_room_left() {
        const MIB: u64 = 1 << 20;
        // 7 MiB at 1 image, 2 MiB per further image, 20 MiB held.
        let pass = PassMemory {
            one: 7 * MIB,
            two: 9 * MIB,
        };
        assert_eq!(pass.most_images(20 * MIB, 27 * MIB), Some(1));
        assert_eq!(pass.most_images(20 * MIB, 33 * MIB), Some(4));
        assert_eq!(pass.at(4) + 20 * MIB, 33 * MIB, "4 images fill it exactly");
        assert_eq!(pass.most_images(20 * MIB, 26 * MIB), None);
    }
}
