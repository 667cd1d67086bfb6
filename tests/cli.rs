//! The `lethe` binary end to end, as a user runs it.

mod common;

use std::path::Path;
use std::process::Command;

fn lethe(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lethe runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tiny_checkpoint(dir: &Path) {
    common::tiny_checkpoint(dir);
}

#[test]
fn data_reports_the_bundled_sets() {
    let (ok, out, err) = lethe(&[
        "data",
        "assets/data/mnist-10k-images-idx3-ubyte.gz",
        "assets/data/tshirt.png",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("loaded 10001 image(s)"), "{out}");
    assert!(out.contains("label 1 ") && out.contains("1127"), "{out}");
}

#[test]
fn data_fails_when_nothing_loads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"garbage").unwrap();
    let (ok, out, err) = lethe(&["data", bad.to_str().unwrap()]);
    assert!(!ok, "exit status must be non-zero");
    assert!(
        out.contains("broken.png") || err.contains("broken.png"),
        "{out}{err}"
    );
}

#[test]
fn sample_writes_a_grid_and_files_and_inspect_shows_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    tiny_checkpoint(&ckpt);
    let grid = dir.path().join("grid.png");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "4",
        "--steps",
        "3",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let img = image::open(&grid).unwrap();
    assert!(img.width() > 16 && img.height() > 16);

    let out_dir = dir.path().join("samples");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "3",
        "--steps",
        "2",
        "--class",
        "3",
        "--guidance",
        "2",
        "--sampler",
        "ddpm",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 3);

    let (ok, out, err) = lethe(&["inspect", ckpt.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("lethe_created_by") && out.contains("cli test"),
        "{out}"
    );
    assert!(
        out.contains("class 11 is the classifier-free-guidance null class"),
        "{out}"
    );
}

#[test]
fn sample_rejects_an_out_of_range_class_and_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    tiny_checkpoint(&ckpt);
    let grid = dir.path().join("g.png");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--class",
        "11",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("--class 11 is out of range"), "{err}");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        "/nope",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/nope"), "{err}");
}
