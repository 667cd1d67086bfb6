#![no_main]
// lethe::fuzz::safetensors: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("safetensors", data);
});
