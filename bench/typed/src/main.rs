//! The `rulehost-typed` command: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use rulehost_typed::Cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match rulehost_typed::run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`rulehost-typed ... | head`) is not an error.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
