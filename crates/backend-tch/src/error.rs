//! Turning libtorch's errors into Atheria's one-line errors.

use std::path::Path;

use engine_api::Error;
use tch::TchError;

/// The backend name used in every error.
pub(crate) const NAME: &str = "tch";

/// The line of a libtorch error that says what went wrong.
///
/// libtorch appends a C++ backtrace to its messages, and the TorchScript
/// interpreter puts a script traceback before the actual error: neither means
/// anything to the person at the terminal. Long first lines (libtorch's zip
/// reader adds a paragraph of advice) are cut after their first sentence.
pub(crate) fn torch_message(e: &TchError) -> String {
    let text = match e {
        TchError::Torch(s) => s.clone(),
        other => other.to_string(),
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = if text.contains("failed in the TorchScript interpreter") {
        lines.next_back()
    } else {
        lines.next()
    };
    let line = line.unwrap_or("unknown libtorch error");
    match line.find(". ") {
        Some(end) if line.len() > 160 => line[..end].to_string(),
        _ => line.to_string(),
    }
}

/// A model file that libtorch cannot load as a TorchScript module.
pub(crate) fn load_error(path: &Path, message: &str) -> Error {
    Error::model(
        path,
        format!(
            "not a loadable TorchScript module ({message}); export one with python/export.py \
             (torch.jit.save of a traced or scripted module)"
        ),
    )
}

/// A libtorch failure while running the model.
pub(crate) fn run_error(what: &str, e: &TchError) -> Error {
    Error::backend(NAME, format!("{what}: {}", torch_message(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_line_that_names_the_problem() {
        let script = TchError::Torch(
            "The following operation failed in the TorchScript interpreter.\n\
             Traceback of TorchScript\n  File \"code\", line 10\n\n\
             RuntimeError: expected input[1, 6, 4, 4] to have 8 channels\n"
                .into(),
        );
        assert_eq!(
            torch_message(&script),
            "RuntimeError: expected input[1, 6, 4, 4] to have 8 channels"
        );
        let zip = TchError::Torch(format!(
            "PytorchStreamReader failed reading zip archive: failed finding central directory. {}\n\
             Exception raised from valid at inline_container.cc:242\nframe #0: c10::Error",
            "advice ".repeat(30)
        ));
        assert_eq!(
            torch_message(&zip),
            "PytorchStreamReader failed reading zip archive: failed finding central directory"
        );
    }
}
