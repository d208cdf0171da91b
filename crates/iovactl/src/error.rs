//! The CLI's error type and its exit codes.

use std::fmt;

/// A failure that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or usage: exit 2.
    Input(String),
    /// The operating system refused something: exit 3.
    Os(String),
    /// The question cannot be answered (an option that can change the answer is not
    /// modelled): exit 4.
    CannotAnswer(String),
}

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
            CliError::CannotAnswer(_) => 4,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Os(m) | CliError::CannotAnswer(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}
