#![no_main]
// lethe::fuzz::attack_toml: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("attack_toml", data);
});
