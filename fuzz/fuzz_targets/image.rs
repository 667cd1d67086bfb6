#![no_main]
// lethe::fuzz::image: what it feeds and how.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lethe::fuzz::run("image", data);
});
