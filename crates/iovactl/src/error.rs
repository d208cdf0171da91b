//! The CLI's error type and its exit codes.

use std::fmt;

/// A failure that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or usage: exit 2.
    Input(String),
    /// The operating system refused something: exit 3.
    Os(String),
    /// Standard output was closed by its reader (`| head`): end quietly with the exit
    /// status a shell reports for a program stopped by SIGPIPE (128 + 13), so that a
    /// pipeline under `set -o pipefail` does not read a cut-short answer as success.
    BrokenPipe,
    /// The question cannot be answered (an option that can change the answer is not
    /// modelled): exit 4.
    CannotAnswer(String),
}

/// The exit status of a program ended by a closed pipe (128 + SIGPIPE).
pub const EXIT_BROKEN_PIPE: u8 = 141;

impl CliError {
    /// Bad input; the message must name the input.
    pub fn input(msg: impl Into<String>) -> Self {
        CliError::Input(msg.into())
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Os(_) => 3,
            CliError::BrokenPipe => EXIT_BROKEN_PIPE,
            CliError::CannotAnswer(_) => 4,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Os(m) | CliError::CannotAnswer(m) => f.write_str(m),
            CliError::BrokenPipe => f.write_str("standard output was closed"),
        }
    }
}

impl std::error::Error for CliError {}
