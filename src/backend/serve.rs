//! The server side of Burn's remote backend (`lethe serve`): this machine's device executes
//! the operation stream of remote clients. Autodiff, optimizer state and run directories stay
//! with the client; the server keeps nothing between sessions.
//!
//! WebSocket is unencrypted: without a token the server listens on loopback only (reach it
//! through an SSH tunnel); with one it listens on every interface, and the token keeps stray
//! clients out of a trusted network — not someone reading the traffic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use burn::backend::{DispatchDevice, Flex};
use burn::server::{
    CustomOpIr, HandleContainer, RemoteServer, TokenAuthorizer, WebSocketTransport,
};
use burn::tensor::{Device, TensorData};

use super::remote::{DESCRIBE_OP, DESCRIPTION_BYTES, encode_description};

/// What `lethe serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub port: u16,
    /// Clients must present this token; without one the server binds to loopback only.
    pub token: Option<String>,
    /// The interface to listen on (default: loopback without a token, every interface with).
    pub bind: Option<IpAddr>,
}

impl ServeOptions {
    /// The address to listen on, or why it is refused (a non-loopback address without a token).
    pub fn address(&self) -> Result<SocketAddr, String> {
        let has_token = self.token.as_deref().is_some_and(|t| !t.is_empty());
        let ip = match (self.bind, has_token) {
            (Some(ip), false) if !ip.is_loopback() => {
                return Err(format!(
                    "refusing to serve on {ip} without a token: anyone who reaches the port could run code on this device. Give --token (or LETHE_SERVE_TOKEN), or serve on loopback and tunnel (ssh -L)"
                ));
            }
            (Some(ip), _) => ip,
            (None, false) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, true) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// A bound server, before it serves: the address clients dial is known (port 0 resolved).
pub struct BoundServer {
    listener: TcpListener,
    server: RemoteServer,
    pub address: SocketAddr,
    pub authenticated: bool,
}

/// Binds the listening socket and prepares the server for `device` (described to clients as
/// `description`).
pub fn bind(
    device: Device,
    description: &str,
    options: &ServeOptions,
) -> Result<BoundServer, String> {
    let requested = options.address()?;
    let listener =
        TcpListener::bind(requested).map_err(|e| format!("cannot listen on {requested}: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let device = device.inner();
    let mut server = with_describe_op(RemoteServer::new([device.clone()]), &device, description)?;
    let token = options.token.clone().filter(|t| !t.is_empty());
    let authenticated = token.is_some();
    if let Some(token) = token {
        let authorizer =
            TokenAuthorizer::new(token).map_err(|_| "the token is empty".to_string())?;
        server = server.with_authorizer(authorizer);
    }
    Ok(BoundServer {
        listener,
        server,
        address,
        authenticated,
    })
}

impl BoundServer {
    /// Serves until Ctrl+C or SIGTERM.
    pub fn serve(self) -> Result<(), String> {
        self.server
            .serve(WebSocketTransport::from_listener(self.listener))
            .map_err(|e| format!("the server stopped: {e}"))
    }
}

/// Registers [`DESCRIBE_OP`] for the backend `device` belongs to (the server refuses ops
/// registered for a backend it does not serve).
fn with_describe_op(
    server: RemoteServer,
    device: &Device,
    description: &str,
) -> Result<RemoteServer, String> {
    let encoded = encode_description(description);
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => {
            Ok(server.with_custom_op::<Flex, _>(DESCRIBE_OP, describe_handler::<Flex>(encoded)))
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        DispatchDevice::Cube(_) => Ok(server.with_custom_op::<burn::backend::Cube, _>(
            DESCRIBE_OP,
            describe_handler::<burn::backend::Cube>(encoded),
        )),
        #[allow(unreachable_patterns)]
        _ => {
            Err("lethe serve serves the CPU or a GPU (cpu, wgpu, cuda), not another server".into())
        }
    }
}

/// Writes the encoded description into the op's one output.
fn describe_handler<B: burn_ir::BackendIr>(
    encoded: Vec<f32>,
) -> impl Fn(&mut HandleContainer<B::Handle>, &CustomOpIr, &B::Device) + Send + Sync + 'static {
    move |handles, op, device| {
        let data = TensorData::new(encoded.clone(), [DESCRIPTION_BYTES]);
        let tensor = B::float_from_data(data, device);
        if let Some(output) = op.outputs.first() {
            handles.register_float_tensor::<B>(&output.id, tensor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(token: Option<&str>, bind: Option<&str>) -> ServeOptions {
        ServeOptions {
            port: 7878,
            token: token.map(String::from),
            bind: bind.map(|b| b.parse().unwrap()),
        }
    }

    #[test]
    fn without_a_token_only_loopback_is_served() {
        assert_eq!(
            options(None, None).address().unwrap().to_string(),
            "127.0.0.1:7878"
        );
        assert_eq!(
            options(Some(""), None).address().unwrap().to_string(),
            "127.0.0.1:7878"
        );
        assert_eq!(
            options(None, Some("::1")).address().unwrap().to_string(),
            "[::1]:7878"
        );
        let refused = options(None, Some("0.0.0.0")).address().unwrap_err();
        assert!(refused.contains("without a token"), "{refused}");
    }

    #[test]
    fn with_a_token_every_interface_or_the_one_named() {
        assert_eq!(
            options(Some("s3cret"), None).address().unwrap().to_string(),
            "0.0.0.0:7878"
        );
        assert_eq!(
            options(Some("s3cret"), Some("10.0.0.5"))
                .address()
                .unwrap()
                .to_string(),
            "10.0.0.5:7878"
        );
    }
}
