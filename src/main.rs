mod cli;

/// mimalloc keeps freed tensor buffers for reuse instead of handing large ones back to the
/// OS and faulting fresh zeroed pages in on the next step (issue #6's profile: ~8% of a
/// training step in page faults, page clearing and memset).
/// Instrumented so that a run can measure a training pass's memory (`train::memory`).
#[global_allocator]
static ALLOCATOR: peakmem_alloc::PeakMemAlloc<mimalloc::MiMalloc> =
    peakmem_alloc::PeakMemAlloc::new(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    give_vulkan_a_runtime_dir();
    lethe::train::memory::install_heap_meter(&ALLOCATOR);
    cli::main()
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
