//! The `rulehost-native` command: `rulehost eval`'s flags, run with the native ports.

use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::exit_code;
use rulehost::commands::eval::Eval;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rulehost::allocator::keep_freed_memory();
    exit_code(Eval::parse().run_with(rulehost_native::load))
}
