#![no_main]
// lethe::fuzz::siss_yaml: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("siss_yaml", data);
});
