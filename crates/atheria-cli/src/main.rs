//! The `atheria` command: a thin layer of argument parsing, logging and
//! progress over the `atheria` library.

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    // The program, unlike a library user, searches Python environments for
    // ONNX Runtime (the project's .venv ships it): see backend_onnx's docs.
    #[cfg(feature = "onnx")]
    atheria::onnx::set_library(atheria::onnx::OrtLibrary::SearchPythonEnvironments)
        .expect("nothing has loaded ONNX Runtime before main");
    // OMP_WAIT_POLICY=PASSIVE for libtorch is set by the library itself,
    // right before it loads the tch backend (src/plugin.rs).
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap says what is wrong in its first paragraph (a missing
            // argument's name is on the indented lines under it); the
            // usage hint after it is left to --help.
            let text = e.render().to_string();
            let what: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let what = match what.split_first() {
                None => "error: invalid arguments".to_string(),
                Some((first, [])) => first.to_string(),
                Some((first, rest)) => format!("{} {}", first, rest.join(", ")),
            };
            cli::error_line(&format!("{what} (see --help)"));
            return ExitCode::from(2);
        }
    };
    cli::init_logging(args.verbose, args.quiet);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            // One line, the whole cause chain, no backtrace: errors are for people.
            cli::report(&e);
            ExitCode::FAILURE
        }
    }
}
