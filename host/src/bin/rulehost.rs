//! The `rulehost` command: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::{Cli, ExitStatus};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match rulehost::cli::run(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            // A closed pipe (`rulehost eval ... | head`) is not an error.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitStatus::Success.into();
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitStatus::Error.into()
        }
    }
}
