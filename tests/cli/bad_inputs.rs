//! Bad inputs get clear errors naming the file and the reason — never a panic — and the
//! good files beside them still load.

use crate::common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lethe::data::{ImageSpec, load_paths};
use lethe::diffusion::checkpoint::{self, CheckpointError, Provenance};
use lethe::diffusion::schedule::SchedulerConfig;
use lethe::diffusion::unet::{UNet, UNetConfig};

const SPEC: ImageSpec = ImageSpec {
    channels: 1,
    height: 28,
    width: 28,
};

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) % 256) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn broken_files_are_rejected_with_reasons_and_good_ones_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.png", &png_bytes(28, 28));
    let full = png_bytes(28, 28);
    write(dir.path(), "truncated.png", &full[..full.len() / 2]);
    write(dir.path(), "text.png", b"this is not an image at all");
    write(dir.path(), "empty.jpg", b"");
    write(dir.path(), "notes.txt", b"hello");
    let set = load_paths(&[dir.path().to_path_buf()], SPEC).unwrap();
    assert_eq!(set.len(), 1, "only good.png loads");
    let reason = |name: &str| {
        set.rejected
            .iter()
            .find(|r| r.path.ends_with(name))
            .unwrap_or_else(|| panic!("{name} was not reported: {:?}", set.rejected))
            .reason
            .clone()
    };
    assert!(
        reason("truncated.png").contains("cannot decode"),
        "{}",
        reason("truncated.png")
    );
    assert!(
        reason("text.png").contains("not a recognised image format"),
        "{}",
        reason("text.png")
    );
    assert!(reason("empty.jpg").contains("empty file"));
    assert!(reason("notes.txt").contains("not an image file"));
}

#[test]
fn a_folder_with_nothing_usable_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "text.png", b"nope");
    let err = load_paths(&[dir.path().to_path_buf()], SPEC)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("no usable image"),
        "{err}"
    );
}

#[test]
fn a_missing_path_is_an_error_naming_it() {
    let err = load_paths(&[PathBuf::from("/no/such/folder")], SPEC)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/folder"), "{err}");
}

#[test]
fn decompression_bomb_is_refused_by_the_size_limits() {
    // A valid PNG header declaring a 60000×60000 canvas with a tiny body.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut hasher = flate2::Crc::new();
        hasher.update(kind);
        hasher.update(data);
        c.extend(hasher.sum().to_be_bytes());
        c
    };
    let mut ihdr = 60000u32.to_be_bytes().to_vec();
    ihdr.extend(60000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", b""));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.png", &png_bytes(28, 28));
    write(dir.path(), "bomb.png", &png);
    let set = load_paths(&[dir.path().to_path_buf()], SPEC).unwrap();
    assert_eq!(set.len(), 1);
    let r = set
        .rejected
        .iter()
        .find(|r| r.path.ends_with("bomb.png"))
        .expect("bomb rejected");
    assert!(
        r.reason.contains("cannot decode") && r.reason.to_lowercase().contains("limit"),
        "{}",
        r.reason
    );
}

#[test]
fn other_sizes_and_colour_are_converted_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = image::RgbImage::from_pixel(64, 48, image::Rgb([200, 10, 10]));
    rgb.save(dir.path().join("big.png")).unwrap();
    let set = load_paths(&[dir.path().join("big.png")], SPEC).unwrap();
    assert_eq!(set.len(), 1);
    let notes: Vec<&String> = set.conversions.keys().collect();
    assert!(
        notes.iter().any(|n| n.contains("resized 64×48 → 28×28")),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("RGB → gray")), "{notes:?}");
    // Rec. 709 luma of (200, 10, 10) is 0.2126·200 + 0.7152·10 + 0.0722·10 ≈ 50.
    let px = set.image(0)[0];
    assert!((48..=52).contains(&px), "{px}");
}

#[test]
fn class_subfolders_become_labels() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["cat", "dog"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        write(&dir.path().join(class), "a.png", &png_bytes(28, 28));
        write(&dir.path().join(class), "b.png", &png_bytes(28, 28));
    }
    let set = load_paths(&[dir.path().to_path_buf()], SPEC).unwrap();
    assert_eq!(set.class_names, vec!["cat", "dog"]);
    assert_eq!(set.labels, vec![Some(0), Some(0), Some(1), Some(1)]);
}

fn idx_images(n: u32, h: u32, w: u32, payload: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        v.extend(d.to_be_bytes());
    }
    v.extend(vec![7u8; payload]);
    v
}

#[test]
fn idx_files_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "ok-images-idx3-ubyte",
        &idx_images(2, 28, 28, 2 * 784),
    );
    let labels = {
        let mut v = vec![0, 0, 8, 1];
        v.extend(2u32.to_be_bytes());
        v.extend([3, 4]);
        v
    };
    write(dir.path(), "ok-labels-idx1-ubyte", &labels);
    let set = load_paths(&[good], SPEC).unwrap();
    assert_eq!(set.labels, vec![Some(3), Some(4)]);

    let cases: [(&str, Vec<u8>, &str); 5] = [
        // Found by fuzzing: a zero side matches an empty payload, whatever the count.
        (
            "zero-images-idx3-ubyte",
            idx_images(754_975_232, 24_113, 0, 0),
            "754975232 images of 24113×0 pixels: a side of 0",
        ),
        (
            "short-images-idx3-ubyte",
            idx_images(5, 28, 28, 784),
            "header promises 3920 bytes of data but the file holds 784",
        ),
        (
            "magic-images-idx3-ubyte",
            {
                let mut v = idx_images(1, 28, 28, 784);
                v[0] = 9;
                v
            },
            "bad IDX magic",
        ),
        (
            "float-images-idx3-ubyte",
            {
                let mut v = idx_images(1, 28, 28, 784);
                v[2] = 0x0d;
                v
            },
            "element type 0x0d",
        ),
        ("tiny-images-idx3-ubyte", vec![0, 0], "too short"),
    ];
    for (name, bytes, expected) in cases {
        let path = write(dir.path(), name, &bytes);
        let err = load_paths(std::slice::from_ref(&path), SPEC)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
}

#[test]
fn idx_with_mismatched_labels_names_the_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(
        dir.path(),
        "x-images-idx3-ubyte",
        &idx_images(2, 28, 28, 2 * 784),
    );
    let mut labels = vec![0, 0, 8, 1];
    labels.extend(3u32.to_be_bytes());
    labels.extend([1, 2, 3]);
    write(dir.path(), "x-labels-idx1-ubyte", &labels);
    let err = load_paths(&[images], SPEC).unwrap_err().to_string();
    assert!(
        err.contains("x-labels-idx1-ubyte") && err.contains("3 labels for 2 images"),
        "{err}"
    );
}

#[test]
fn corrupt_gzip_idx_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad-images-idx3-ubyte.gz",
        &[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5],
    );
    let err = load_paths(&[path], SPEC).unwrap_err().to_string();
    assert!(
        err.contains("bad-images-idx3-ubyte.gz") && err.contains("gzip"),
        "{err}"
    );
}

#[test]
fn cifar_batches_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = vec![3u8];
    record.extend(vec![128u8; 3072]);
    let good = write(dir.path(), "data_batch_1.bin", &record);
    let spec = ImageSpec {
        channels: 3,
        height: 32,
        width: 32,
    };
    let set = load_paths(&[good], spec).unwrap();
    assert_eq!(set.labels, vec![Some(3)]);
    let bad = write(dir.path(), "data_batch_2.bin", &record[..1000]);
    let err = load_paths(&[bad], spec).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_2.bin") && err.contains("not a whole number of CIFAR-10 records"),
        "{err}"
    );
}

fn saved_tiny(dir: &Path) -> UNetConfig {
    let device = Device::flex();
    let config = common::tiny_config();
    let model = UNet::new(&config, 1, &device).unwrap();
    checkpoint::save(
        dir,
        &model,
        &config,
        &SchedulerConfig::default(),
        &Provenance::new("test"),
    )
    .unwrap();
    config
}

fn load_err(dir: &Path) -> CheckpointError {
    match checkpoint::load(dir, &Device::flex()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_safetensors_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path());
    let weights = dir.path().join(checkpoint::UNET_WEIGHTS);
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(
        err.contains("diffusion_pytorch_model.safetensors")
            && err.contains("not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn lying_safetensors_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path());
    let weights = dir.path().join(checkpoint::UNET_WEIGHTS);
    let mut bytes = std::fs::read(&weights).unwrap();
    // Header length claims far more bytes than the file has.
    bytes[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&weights, &bytes).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");

    // A header whose tensor offsets point past the data.
    saved_tiny(dir.path());
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let lying = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1);
    assert_ne!(lying, header);
    bytes.splice(8..8 + header_len, lying.into_bytes());
    std::fs::write(&weights, &bytes).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn checkpoint_of_another_architecture_names_the_first_mismatching_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = saved_tiny(dir.path());
    config.block_out_channels = vec![8, 32];
    std::fs::write(
        dir.path().join(checkpoint::UNET_CONFIG),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    match load_err(dir.path()) {
        CheckpointError::ShapeMismatch {
            name,
            found,
            expected,
            ..
        } => {
            assert_eq!(name, "down_blocks.1.resnets.0.conv1.weight");
            assert_eq!(found, vec![16, 8, 3, 3]);
            assert_eq!(expected, vec![32, 8, 3, 3]);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
}

#[test]
fn a_config_with_more_layers_reports_the_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = saved_tiny(dir.path());
    config.layers_per_block = 2;
    std::fs::write(
        dir.path().join(checkpoint::UNET_CONFIG),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(
        err.contains("down_blocks.0.resnets.1") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_config_with_fewer_layers_reports_leftover_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = saved_tiny(dir.path());
    config.add_attention = false;
    std::fs::write(
        dir.path().join(checkpoint::UNET_CONFIG),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(
        err.contains("does not describe") && err.contains("mid_block.attentions.0"),
        "{err}"
    );
}

#[test]
fn unsupported_or_malformed_configs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = saved_tiny(dir.path());
    config.down_block_types[0] = "CrossAttnDownBlock2D".into();
    let config_path = dir.path().join(checkpoint::UNET_CONFIG);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(
        err.contains("config.json") && err.contains("CrossAttnDownBlock2D"),
        "{err}"
    );
    std::fs::write(&config_path, b"{ not json").unwrap();
    let err = load_err(dir.path()).to_string();
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );
    let err = match checkpoint::load(Path::new("/no/such/checkpoint"), &Device::flex()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded a missing checkpoint"),
    };
    assert!(
        err.contains("/no/such/checkpoint") && err.contains("not a checkpoint directory"),
        "{err}"
    );
}

#[test]
fn save_then_load_roundtrips_weights_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let config = common::tiny_config();
    let model = UNet::new(&config, 3, &device).unwrap();
    let provenance = Provenance::new("test").with("lethe_steps", 42);
    checkpoint::save(
        dir.path(),
        &model,
        &config,
        &SchedulerConfig::default(),
        &provenance,
    )
    .unwrap();
    let loaded = checkpoint::load(dir.path(), &device).unwrap();
    assert_eq!(
        loaded.metadata.get("lethe_steps").map(String::as_str),
        Some("42")
    );
    assert_eq!(loaded.config, config);
    let a = checkpoint::parameter_values(&model);
    let b = checkpoint::parameter_values(&loaded.unet);
    assert_eq!(a.len(), b.len());
    for ((na, _, va), (nb, _, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(va, vb, "{na}");
    }
    // Atomic writes leave no temp files behind.
    for sub in ["unet", "scheduler"] {
        let names: Vec<String> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        assert!(
            names.iter().all(|n| !lethe::util::is_partial_write(n)),
            "{names:?}"
        );
    }
}
