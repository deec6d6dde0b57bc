//! The `atheria` command: a thin layer of argument parsing, logging and
//! progress over the `atheria` library.

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    #[cfg(feature = "tch")]
    passive_openmp();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first line says what is wrong; the rest is a usage hint.
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("{} (see --help)", first.trim_end());
            return ExitCode::from(2);
        }
    };
    cli::init_logging(args.verbose, args.quiet);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            // One line, the whole cause chain, no backtrace: errors are for people.
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// libtorch's OpenMP workers spin after each forward by default, taking the
/// cores the engine's rayon workers need next. The OpenMP runtime reads
/// `OMP_WAIT_POLICY` when it is loaded, which is when the tch backend's
/// library is first loaded (src/plugin.rs), long after this; so the binary
/// asks for `PASSIVE` unless the user chose a policy (ARCHITECTURE.md,
/// threading).
#[cfg(feature = "tch")]
fn passive_openmp() {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // First thing in `main`: no other thread exists yet to read the
        // environment while it changes.
        std::env::set_var("OMP_WAIT_POLICY", "PASSIVE");
    }
}
