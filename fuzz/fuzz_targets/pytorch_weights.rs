#![no_main]
// lethe::fuzz::pytorch_weights: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("pytorch_weights", data);
});
