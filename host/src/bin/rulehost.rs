//! The `rulehost` command: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::{Cli, exit_code, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    exit_code(run(Cli::parse()))
}
