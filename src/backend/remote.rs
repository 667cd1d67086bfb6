//! The client side of Burn's remote backend: a `lethe serve` on another machine (or another
//! process) computes; this process keeps the autodiff graph, the optimizer, the data and the
//! run directory, and streams tensor operations over a WebSocket.
//!
//! One server per process: Burn keeps a remote device's session for the life of the process,
//! so the connection is process-wide state here too, set by `--backend remote:ws://…` or the
//! workbench's *Remote…* entry and read by [`super::device`].
//!
//! Lethe's fused GroupNorm+SiLU kernel is not registered on the server: on a remote device the
//! UNet uses the composed (differentiable) GroupNorm, which is what training uses everywhere.

use std::sync::Mutex;
use std::time::Instant;

use burn::backend::{
    BackendTensor, DispatchDevice, DispatchKindConversion, DispatchTensor, Remote,
};
use burn::remote::{ConnectError, CustomOpClient, RemoteHost};
use burn::server::CustomOpIr;
use burn::tensor::{DType, Device, Shape, Tensor};
use burn_ir::{TensorIr, TensorStatus};

/// The custom operation a `lethe serve` answers with a description of its device, so the
/// client can show what it computes on (the remote protocol itself names no device).
pub(crate) const DESCRIBE_OP: &str = "lethe.describe-server";
/// Bytes of the description the op returns (one per f32 element, zero-padded).
pub(crate) const DESCRIPTION_BYTES: usize = 256;

/// Where the environment gives the token for a `lethe serve --token` server.
pub const TOKEN_ENV: &str = "LETHE_REMOTE_TOKEN";

/// A connected server as the status bar and `run.json` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    pub url: String,
    /// The server's device as `lethe serve` describes it.
    pub server_device: String,
    /// Median round trip of a one-element read, in milliseconds.
    pub latency_ms: f64,
}

impl RemoteStatus {
    /// `NVIDIA H200 (…) at ws://gpu:7878`.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.server_device, self.url)
    }
}

struct Connection {
    device: Device,
    status: RemoteStatus,
}

static CONNECTION: Mutex<Option<Connection>> = Mutex::new(None);

/// Checks that `url` names a WebSocket server (`ws://host:port`) and returns it trimmed.
pub fn parse_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        format!("`{url}` is not a lethe serve address: expected ws://host:port (e.g. ws://127.0.0.1:7878)")
    })?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}` names no port: expected ws://host:port"))?;
    if host.is_empty() {
        return Err(format!("`{url}` names no host: expected ws://host:port"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{url}`: `{port}` is not a port number"))?;
    Ok(url.trim_end_matches('/').to_string())
}

/// Connects to the `lethe serve` at `url` (presenting `token` where the server asks for one),
/// asks it what it computes on and times a round trip. Becomes this process's remote device.
///
/// Blocks: an unreachable server is retried by Burn for about 16 s before this fails.
pub fn connect(url: &str, token: Option<&str>) -> Result<RemoteStatus, String> {
    let url = parse_url(url)?;
    let mut host = RemoteHost::websocket(&url);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        host = host.with_credential(token);
    }
    let device = Device::remote_options(&host)
        .init()
        .map_err(|e| connect_error(&url, e))?;
    let server_device = describe_server(&device).map_err(|e| format!("{url}: {e}"))?;
    let latency_ms = round_trip_ms(&device).map_err(|e| format!("{url}: {e}"))?;
    let status = RemoteStatus {
        url,
        server_device,
        latency_ms,
    };
    *lock() = Some(Connection {
        device,
        status: status.clone(),
    });
    Ok(status)
}

fn connect_error(url: &str, error: ConnectError) -> String {
    match error {
        ConnectError::Unauthorized => format!(
            "{url} refused the token: give the server's token in {TOKEN_ENV} (or at the prompt)"
        ),
        ConnectError::Unreachable { reason } => {
            format!("{url} cannot be reached: {reason}")
        }
        other => format!("{url}: {other}"),
    }
}

/// The connected server, if any.
pub fn status() -> Option<RemoteStatus> {
    lock().as_ref().map(|c| c.status.clone())
}

/// The connected server's device (inference; `.autodiff()` for training).
pub fn device() -> Result<Device, String> {
    lock().as_ref().map(|c| c.device.clone()).ok_or_else(|| {
        "no lethe serve is connected: use --backend remote:ws://host:port (or the workbench's Remote… entry)".to_string()
    })
}

/// Times a round trip to the connected server now (the status bar's latency), or says why
/// it did not answer.
pub fn ping() -> Result<f64, String> {
    let device = device()?;
    let latency_ms = round_trip_ms(&device)?;
    if let Some(connection) = lock().as_mut() {
        connection.status.latency_ms = latency_ms;
    }
    Ok(latency_ms)
}

fn lock() -> std::sync::MutexGuard<'static, Option<Connection>> {
    // A panic while holding the lock leaves the connection as it was: still usable.
    CONNECTION.lock().unwrap_or_else(|e| e.into_inner())
}

/// Median of five one-element reads, each a full round trip (upload, op, read back).
fn round_trip_ms(device: &Device) -> Result<f64, String> {
    let mut times = Vec::with_capacity(5);
    for i in 0..5 {
        let start = Instant::now();
        let value = guarded(|| {
            let x = Tensor::<1>::from_floats([i as f32], device).add_scalar(1.0);
            x.try_into_data()
                .map_err(|e| format!("the server did not answer: {e:?}"))
        })??;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        let got: Vec<f32> = value.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        if got != [i as f32 + 1.0] {
            return Err(format!(
                "the server computed {i} + 1 = {got:?}: not a Lethe-compatible server"
            ));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs [`DESCRIBE_OP`] on the server and decodes its answer.
fn describe_server(device: &Device) -> Result<String, String> {
    let inner = device.clone().inner();
    let DispatchDevice::Remote(remote) = inner.as_dispatch() else {
        return Err("not a remote device".into());
    };
    let data = guarded(|| {
        let client = CustomOpClient::new(remote);
        let output = TensorIr {
            id: client.create_empty_handle(),
            shape: Shape::new([DESCRIPTION_BYTES]),
            status: TensorStatus::NotInit,
            dtype: DType::F32,
        };
        let op = CustomOpIr::new(DESCRIBE_OP, &[], &[output]);
        let primitive = client.register(op).remove(0);
        let dispatch = <DispatchTensor as DispatchKindConversion<Remote>>::from_backend(
            BackendTensor::Float(primitive),
        );
        Tensor::<1>::from_dispatch(dispatch)
            .try_into_data()
            .map_err(|e| format!("the server did not describe its device: {e:?}"))
    })??;
    let bytes: Vec<f32> = data.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    decode_description(&bytes)
}

/// The description as [`encode_description`] wrote it.
fn decode_description(values: &[f32]) -> Result<String, String> {
    let bytes: Vec<u8> = values
        .iter()
        .take_while(|v| **v != 0.0)
        .map(|v| *v as u8)
        .collect();
    String::from_utf8(bytes).map_err(|_| "the server's description is not UTF-8".to_string())
}

/// `text` as [`DESCRIPTION_BYTES`] f32 values, one byte each, cut at a character boundary.
pub(crate) fn encode_description(text: &str) -> Vec<f32> {
    let mut end = text.len().min(DESCRIPTION_BYTES - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: Vec<f32> = text.as_bytes()[..end].iter().map(|b| *b as f32).collect();
    out.resize(DESCRIPTION_BYTES, 0.0);
    out
}

/// Runs `work`, turning a panic inside Burn's remote client (a session that broke off) into
/// an error, so a dropped server fails a request instead of the process.
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the remote session failed".into());
        format!("the connection to the server failed: {message}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_name_a_websocket_host_and_port() {
        assert_eq!(
            parse_url(" ws://127.0.0.1:7878/ ").unwrap(),
            "ws://127.0.0.1:7878"
        );
        assert_eq!(parse_url("ws://gpu-box:80").unwrap(), "ws://gpu-box:80");
        for bad in [
            "http://h:1",
            "ws://h",
            "ws://:7878",
            "ws://h:port",
            "ws://h:70000",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(err.contains(bad.trim_end_matches('/')), "{bad}: {err}");
        }
    }

    #[test]
    fn a_description_survives_the_tensor_round_trip() {
        let text = "NVIDIA H200 (discrete GPU, Vulkan) — 139 GiB";
        assert_eq!(decode_description(&encode_description(text)).unwrap(), text);
        let long = "é".repeat(400);
        let cut = decode_description(&encode_description(&long)).unwrap();
        assert!(cut.len() < DESCRIPTION_BYTES && long.starts_with(&cut));
    }

    #[test]
    fn without_a_connection_the_remote_device_is_refused_with_how_to_connect() {
        if status().is_none() {
            assert!(device().unwrap_err().contains("--backend remote:ws://"));
        }
    }
}
