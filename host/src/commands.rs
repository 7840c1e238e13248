//! One module per subcommand, each a clap struct with `run`.

pub mod eval;
pub mod test;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::runtime::Limits;

/// Options shared by commands that load rules.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Folders searched for a spec's `Filename:` component after the spec's own folder.
    #[arg(
        long = "components",
        value_name = "DIR",
        env = "RULEHOST_COMPONENTS",
        value_delimiter = ':'
    )]
    pub components: Vec<PathBuf>,
    /// Deadline for one call into a rule, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub timeout_ms: u64,
    /// Linear memory cap per rule instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_mib: usize,
}

impl RuleArgs {
    /// The sandbox limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.timeout_ms),
            memory_bytes: self.memory_mib << 20,
            ..Limits::default()
        }
    }
}
