#![no_main]
// lethe::fuzz::pretrain_toml: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("pretrain_toml", data);
});
