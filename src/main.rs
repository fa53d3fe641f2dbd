//! The `ctiphone` binary: parses the command line and hands over to [`ctiphone::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    ctiphone::cli::run(ctiphone::cli::Cli::parse())
}
