#![no_main]
// lethe::fuzz::sweep_file: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("sweep_file", data);
});
