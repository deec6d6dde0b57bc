//! `atheria serve`: the simulation on its own thread, watched and steered
//! from a browser (crates/atheria-serve).

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use atheria_serve::{ServeOptions, Server};
use clap::Args;

use super::run::{start_watchdog, SimArgs, Stages};
use crate::cli::out;

/// Arguments of `atheria serve`.
#[derive(Debug, Args)]
// `--gamma -1` must reach our range check, not read as an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    #[command(flatten)]
    pub sim: SimArgs,
    /// Port to listen on (0: any free port, printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. Anything but loopback needs a token: --token, or one is generated and printed.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Access token every request must carry (?token=T); 8 or more letters, digits or -._~.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// Abort with an error naming the stage when a start-up stage takes longer than this.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `atheria serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.sim.check()?;
    // The token rule is checked before the model loads: a bad one costs nothing.
    atheria_serve::access_token(args.bind, args.token.as_deref())?;
    let watchdog = start_watchdog(args.timeout)?;
    let mut stages = Stages::new(watchdog.as_ref());
    let sim = args.sim.build(&mut stages)?;
    drop(watchdog);
    let mut options = ServeOptions::default();
    options.bind = args.bind;
    options.port = args.port;
    options.token = args.token.clone();
    let server = Server::start(sim, options).context("atheria serve")?;
    if args.token.is_none() && server.token().is_some() {
        tracing::warn!(
            "{} is not a loopback address: generated an access token; anyone with the URL can steer the simulation",
            args.bind
        );
    }
    tracing::info!("listening on {}", server.local_addr());
    out!("open {}", server.url());
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let _ = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    });
    let _ = stop_rx.recv();
    tracing::info!("stopping");
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}
