//! The `rulehost` command: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::{Cli, exit_code, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rulehost::allocator::keep_freed_memory();
    exit_code(run(Cli::parse()))
}
