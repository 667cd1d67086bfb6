//! `lethe serve`: this machine's device (a GPU, or the CPU) computes for `lethe` clients
//! elsewhere through Burn's remote backend; the client keeps the run (autodiff graph,
//! optimizer, data, run directory) and sends the operations. Without a token the server
//! listens on loopback only.

use std::io::Write;
use std::net::IpAddr;

use clap::Args;

use lethe::backend::serve::{self, ServeOptions};

use crate::cli::args::Compute;

/// Where the environment gives `lethe serve` its token (kept out of `ps` and shell history).
const SERVE_TOKEN_ENV: &str = "LETHE_SERVE_TOKEN";

#[derive(Args)]
pub struct ServeArgs {
    /// TCP port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 7878)]
    port: u16,
    /// Clients must present this token (their LETHE_REMOTE_TOKEN). Also read from
    /// LETHE_SERVE_TOKEN. Without one the server listens on 127.0.0.1 only.
    #[arg(long)]
    token: Option<String>,
    /// The address to listen on (default: 127.0.0.1 without a token, every interface with
    /// one). A non-loopback address needs a token.
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    #[command(flatten)]
    compute: Compute,
}

pub fn run(args: &ServeArgs) -> Result<(), String> {
    if args.compute.backend.remote.is_some() {
        return Err(
            "lethe serve serves this machine's device: --backend auto, cpu, wgpu or cuda".into(),
        );
    }
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var(SERVE_TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    let options = ServeOptions {
        port: args.port,
        token,
        bind: args.bind,
    };
    // A GPU is served only after it has matched the CPU on the demo model, as for local runs.
    let selection = args.compute.select_without_model()?;
    let description = selection.device_name.clone();
    let bound = serve::bind(selection.device.clone(), &description, &options)?;
    let access = if bound.authenticated {
        "clients must present the token"
    } else {
        "no token: loopback only — reach it from another machine through an SSH tunnel (ssh -L), or restart with --token"
    };
    println!(
        "serving {description} on ws://{} — {access}\nclients: lethe … --backend remote:ws://{}  (Ctrl+C stops)",
        bound.address, bound.address
    );
    // Tests and scripts read the address from the first line before the server blocks.
    let _ = std::io::stdout().flush();
    bound.serve()
}
