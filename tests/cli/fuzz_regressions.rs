//! What the fuzz targets (`fuzz/`, cargo-fuzz) once found, replayed on every `cargo test`
//! through the same entry points (`lethe::fuzz`): each input in
//! `fuzz/regressions/<target>/` must now be accepted or refused with an error that names
//! the file it came from, never panic. Also keeps the targets and this list in step.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_parser_has_a_fuzz_target_built_by_cargo_fuzz() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in lethe::fuzz::TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("lethe::fuzz::run(\"{name}\"")),
            "{} does not call its own entry point",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}

#[test]
fn every_input_the_fuzzers_found_is_refused_cleanly_naming_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch_name = scratch.path().display().to_string();
    let mut replayed = 0;
    for (name, target) in lethe::fuzz::TARGETS {
        for input in files_in(&fuzz_dir().join("regressions").join(name)) {
            let bytes = std::fs::read(&input).unwrap();
            if let Err(error) = target(scratch.path(), &bytes) {
                assert!(
                    error.contains(&scratch_name),
                    "{}: the error does not name the file it read: {error}",
                    input.display()
                );
            }
            replayed += 1;
        }
    }
    println!("replayed {replayed} input(s) the fuzzers found");
}

/// One random edit of the kind libFuzzer makes: a bit flipped, a byte set to an edge value,
/// bytes inserted, removed or repeated, the input cut, or a number made huge or negative.
fn mutate(input: &mut Vec<u8>, rng: &mut impl rand::Rng) {
    let at = |rng: &mut dyn rand::RngCore, len: usize| {
        if len == 0 {
            0
        } else {
            (rng.next_u64() % len as u64) as usize
        }
    };
    let len = input.len();
    match rng.random_range(0..7) {
        0 if len > 0 => {
            let i = at(rng, len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng, len);
            input[i] = [0, 0xff, 0x7f, 0x80, b'-', b'9'][rng.random_range(0..6)];
        }
        2 => {
            let i = at(rng, len + 1);
            let n = rng.random_range(1..9);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 1 => {
            let i = at(rng, len);
            let n = rng.random_range(1..=(len - i).min(64));
            input.drain(i..i + n);
        }
        4 if len > 0 => input.truncate(at(rng, len)),
        5 if len > 0 => {
            let i = at(rng, len);
            let n = rng.random_range(1..=(len - i).min(256));
            let chunk = input[i..i + n].to_vec();
            input.splice(i..i, chunk);
        }
        _ => {
            // A number in a text format (a count, a size, a channel list) made extreme.
            if let Some(i) = input.iter().position(|b| b.is_ascii_digit()) {
                let huge: &[u8] = [&b"99999999999999999999"[..], b"-1", b"4294967296", b"0"]
                    [rng.random_range(0..4)];
                input.splice(i..i + 1, huge.iter().copied());
            }
        }
    }
}

/// A brief fuzzing pass in the test suite, without instrumentation: every target's seeds
/// (`fuzz/seed.sh`) and 300 random edits of them (one to eight edits each, seeded) go
/// through the target's entry point. The long coverage-guided runs are cargo-fuzz's.
#[test]
fn every_target_survives_its_seeds_and_random_edits_of_them() {
    use rand::{Rng, SeedableRng};
    let corpus = tempfile::tempdir().unwrap();
    let seeded = std::process::Command::new("bash")
        .arg(fuzz_dir().join("seed.sh"))
        .env("CORPUS", corpus.path())
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "fuzz/seed.sh: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30);
    for (name, target) in lethe::fuzz::TARGETS {
        let seeds: Vec<Vec<u8>> = files_in(&corpus.path().join(name))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(!seeds.is_empty(), "fuzz/seed.sh wrote no seed for {name}");
        let (mut accepted, mut refused) = (0, 0);
        let mut try_input = |input: &[u8]| {
            let run = std::panic::AssertUnwindSafe(|| target(scratch.path(), input));
            match std::panic::catch_unwind(run) {
                Ok(Ok(())) => accepted += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => {
                    let kept = std::env::temp_dir().join(format!("lethe-fuzz-finding-{name}"));
                    std::fs::write(&kept, input).unwrap();
                    panic!("{name} panicked on the input kept in {}", kept.display());
                }
            }
        };
        for seed in &seeds {
            try_input(seed);
        }
        for _ in 0..300 {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..=8) {
                mutate(&mut input, &mut rng);
            }
            try_input(&input);
        }
        println!(
            "{name}: {} seeds, {accepted} accepted, {refused} refused",
            seeds.len()
        );
        assert!(accepted > 0, "{name}: not even a seed was accepted");
    }
}
