mod cli;

/// mimalloc keeps freed tensor buffers for reuse instead of handing large ones back to the
/// OS and faulting fresh zeroed pages in on the next step (issue #6's profile: ~8% of a
/// training step in page faults, page clearing and memset).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
