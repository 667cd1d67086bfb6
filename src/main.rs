mod cli;

/// mimalloc keeps freed tensor buffers for reuse instead of handing large ones back to the
/// OS and faulting fresh zeroed pages in on the next step (issue #6's profile: ~8% of a
/// training step in page faults, page clearing and memset).
/// Instrumented so that a run can measure a training pass's memory (`train::memory`).
#[global_allocator]
static ALLOCATOR: peakmem_alloc::PeakMemAlloc<mimalloc::MiMalloc> =
    peakmem_alloc::PeakMemAlloc::new(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    keep_freed_memory_committed();
    give_vulkan_a_runtime_dir();
    lethe::train::memory::install_heap_meter(&ALLOCATOR);
    cli::main()
}

/// mimalloc 3 hands freed memory back to the OS ("purges" it) after a second unused. A
/// training step of a 35.7M-parameter UNet takes longer than that between one use of its
/// largest buffers (attention scores, activations of 100+ MB) and the next, so every step
/// faulted them in again as fresh zeroed pages: 27% of the step in the kernel's
/// `clear_page_erms` (`perf`, issue #29), 17.4 → 9.4 s per step at batch 16 without
/// purging, for 8% more peak resident memory (4.06 → 4.40 GB). The process keeps its peak
/// committed instead, which is what a run reaches every step anyway.
fn keep_freed_memory_committed() {
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys exports no
    // constant for it); only set where the option there still holds its documented default
    // (1000 ms), so a renumbering elsewhere changes nothing rather than the wrong option.
    // A delay set in the environment (MIMALLOC_PURGE_DELAY) is the user's and is kept.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const NEVER: std::ffi::c_long = -1;
    // SAFETY: plain option reads/writes, made before any other thread exists.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, NEVER);
        }
    }
}

/// Mesa's Vulkan drivers probe for a Wayland session when wgpu lists adapters, and print
/// `error: XDG_RUNTIME_DIR is invalid or not set` where none exists (a server, CI, ssh),
/// which reads like Lethe failing. Where the variable is unset, point it at a private
/// empty directory: the probe then finds no session, quietly. Runs first in `main`, before
/// any other thread exists, which is what makes changing the environment sound.
fn give_vulkan_a_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("lethe-runtime-{user}"));
    #[cfg(unix)]
    let created = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() || dir.is_dir()
    };
    #[cfg(not(unix))]
    let created = false;
    if created {
        // SAFETY: single-threaded at this point (first statement of `main`).
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}
