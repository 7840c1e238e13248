//! The `rulehost-native` command: `rulehost eval`'s flags, run with the native ports.

use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::ExitStatus;
use rulehost::commands::eval::Eval;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Eval::parse().run_with(rulehost_native::load) {
        Ok(status) => status.into(),
        Err(err) => {
            // A closed pipe (`rulehost-native ... | head`) is not an error.
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
