//! Command-line interface: one module per subcommand.

mod bench;
#[cfg(feature = "mpi")]
mod distributed;
mod doctor;
mod progress;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Atheria Native: run neural quantum-cellular-automaton laws trained in PyTorch.
#[derive(Debug, Parser)]
#[command(name = "atheria", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `run`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a simulation (the embedded default law unless --model is given).
    Run(run::RunArgs),
    /// Benchmark every backend against the PyTorch reference engine.
    Bench(bench::BenchArgs),
    /// Serve a live simulation to browsers: a page to watch and steer it (http://127.0.0.1:8080/).
    Serve(serve::ServeArgs),
    /// Check that each backend works here: library, version, a tiny model, one forward.
    Doctor(doctor::DoctorArgs),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::bench(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Serve(args) => serve::serve(args),
    }
}

/// The error of `--distributed` in a program built without MPI: one line
/// saying how to get it.
#[cfg(not(feature = "mpi"))]
pub fn no_mpi() -> anyhow::Error {
    anyhow::anyhow!(
        "--distributed needs MPI, and this atheria was built without it: install Open MPI \
         (scripts/setup-mpi.sh) and build with `cargo build --release --features mpi`"
    )
}

/// Prints an error as the program's one line, `error: ...` (the whole
/// cause chain, [`one_line`]), on stderr.
pub fn report(e: &anyhow::Error) {
    error_line(&format!("error: {}", one_line(e)));
}

/// Writes `line` and a newline to stderr in one write: `eprintln!` writes
/// each formatted piece apart on the unbuffered stderr, so the error lines
/// of several processes sharing it (the ranks under mpirun) would mix
/// mid-line.
pub fn error_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Writes one line to stdout. A closed stdout (`atheria doctor | head -1`)
/// is not an error of the program's work: the line is dropped, the work
/// (a run, its `--save`) goes on, and nothing panics as `println!` would.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `println!` for the program's output: see [`print_line`].
macro_rules! out {
    () => { $crate::cli::print_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::cli::print_line(format_args!($($arg)*)) };
}
pub(crate) use out;

/// Seconds a user gave as a timeout, as a `Duration`: positive, finite and
/// not beyond what a `Duration` holds (`--timeout 1e300` is an error, not a
/// panic).
pub fn timeout_duration(flag: &str, secs: f64) -> anyhow::Result<std::time::Duration> {
    if !(secs.is_finite() && secs > 0.0) {
        anyhow::bail!("{flag} {secs} must be a positive number of seconds");
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{flag} {secs:e} is too long: give at most 1e18 seconds"))
}

/// Sets up tracing on stderr; RUST_LOG overrides the level.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    let mut line = parts.join(": ").replace('\n', " ");
    // The library words its errors for any program; the command line adds
    // the flag that fixes them.
    let is = |f: fn(&atheria::Error) -> bool| {
        e.chain()
            .filter_map(|c| c.downcast_ref::<atheria::Error>())
            .any(|a| f(a.cause()))
    };
    if is(|a| matches!(a, atheria::Error::TooManyCells { .. })) {
        line.push_str(" (--max-cells N sets the limit)");
    }
    if is(|a| matches!(a, atheria::Error::OutOfMemory { .. })) {
        line.push_str(" (a smaller --grid, or --max-cells to refuse such states up front)");
    }
    line
}
