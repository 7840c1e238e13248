//! The command line: [`Cli`] (raw clap arguments) and [`ExitStatus`].

use clap::{Parser, Subcommand};

use crate::commands;

/// Runs security detection rules as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "rulehost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate JSON-lines event files (or stdin) and print alerts as JSON lines.
    Eval(commands::eval::Eval),
    /// Run the `Tests:` and `Scenarios:` of Panther-format rule specs.
    Test(commands::test::Test),
    /// Run one test of one rule and show what the rule printed.
    Debug(commands::debug::Debug),
    /// Show a component's imports, exports, sha256 and whether rulehost would load it.
    Inspect(commands::inspect::Inspect),
    /// Pin the sha256 of every rule's component in `DIR/rulehost.lock`.
    Lock(commands::lock::Lock),
    /// Show the alert state kept by `eval --state`, or clear a rule's windows from it.
    State(commands::state::State),
    /// Run the rules on a Kafka topic as one worker of many, with the alert state in Redis.
    #[cfg(feature = "serve")]
    Serve(commands::serve::Serve),
}

/// What a run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: it worked and the answer is "yes" (tests pass, input fully evaluated).
    Success,
    /// 1: it worked but the answer is "no" (a test failed; alerts with `--fail-on-alerts`).
    Failure,
    /// 2: something broke or was skipped (bad input lines, rule errors, invalid specs).
    Error,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
        })
    }
}

/// The process's exit code for a command's outcome: an error is printed with its causes,
/// except a closed pipe (`rulehost eval ... | head`), which is not an error.
pub fn exit_code(outcome: anyhow::Result<ExitStatus>) -> std::process::ExitCode {
    match outcome {
        Ok(status) => status.into(),
        Err(err) => {
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

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Eval(cmd) => cmd.run(),
        Command::Test(cmd) => cmd.run(),
        Command::Debug(cmd) => cmd.run(),
        Command::Inspect(cmd) => cmd.run(),
        Command::Lock(cmd) => cmd.run(),
        Command::State(cmd) => cmd.run(),
        #[cfg(feature = "serve")]
        Command::Serve(cmd) => cmd.run(),
    }
}
