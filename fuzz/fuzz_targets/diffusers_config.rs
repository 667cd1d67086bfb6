#![no_main]
// lethe::fuzz::diffusers_config: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("diffusers_config", data);
});
