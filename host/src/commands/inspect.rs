//! `rulehost inspect`: what a component imports and exports, and whether it would load.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::runtime::{
    ImportVerdict, Limits, Provision, Runtime, audit::DETECTION, audit::RULE_SOURCE,
};

/// Show a component's world, exports, imports, size and sha256, and the load-time audit
/// verdict (the same checks `eval` and `test` apply).
///
/// Exit status: 0 when rulehost would load the component; 2 when it is refused or cannot
/// be read.
#[derive(Debug, Parser)]
pub struct Inspect {
    /// The component file.
    #[arg(value_name = "PATH.wasm")]
    path: PathBuf,
}

impl Inspect {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        // Default limits: inspecting compiles and links, it never instantiates.
        let runtime = Runtime::new(Limits::default())?;
        let inspection = runtime.inspect(&self.path)?;
        println!("component: {}", self.path.display());
        println!("size: {} bytes", inspection.size);
        println!("sha256: {}", inspection.sha256);
        match &inspection.audit {
            None => println!("world: none (not a component)"),
            Some(audit) => {
                let runtime = audit
                    .exports
                    .iter()
                    .any(|e| e.starts_with("rulehost:rules/rule-source@"));
                if audit.world.is_none() && audit.incompatible.is_empty() && runtime {
                    println!(
                        "world: rulehost:rules/rule-runtime (a language runtime: exports \
                         `{DETECTION}` and `{RULE_SOURCE}`)"
                    );
                } else if audit.world.is_none() && audit.incompatible.is_empty() {
                    println!("world: rulehost:rules/rule (exports `{DETECTION}`)");
                } else {
                    println!("world: not a rulehost rule");
                }
                println!("exports:");
                if audit.exports.is_empty() {
                    println!("  (none)");
                }
                for name in &audit.exports {
                    println!("  {name}");
                }
                println!("imports:");
                if audit.imports.is_empty() {
                    println!("  (none)");
                }
                let width = audit
                    .imports
                    .iter()
                    .map(|(n, _)| n.len())
                    .max()
                    .unwrap_or(0);
                for (name, verdict) in &audit.imports {
                    println!("  {name:width$}  {}", describe(*verdict));
                }
            }
        }
        if inspection.problems.is_empty() {
            println!("verdict: ok");
            Ok(ExitStatus::Success)
        } else {
            println!("verdict: refused");
            for problem in &inspection.problems {
                println!("  - {problem}");
            }
            Ok(ExitStatus::Error)
        }
    }
}

fn describe(verdict: ImportVerdict) -> &'static str {
    match verdict {
        ImportVerdict::Types => "ok",
        ImportVerdict::Wasi(Provision::Empty) => "ok (no capability)",
        ImportVerdict::Wasi(Provision::EventTime) => "ok (virtualised: the event's time)",
        ImportVerdict::Wasi(Provision::FixedSeed) => "ok (virtualised: fixed seed)",
        ImportVerdict::Wasi(Provision::Refused) => "ok (stubs refuse every call)",
        ImportVerdict::Modules => "ok (helper modules from the host)",
        ImportVerdict::IncompatibleVersion => "refused (incompatible version)",
        ImportVerdict::Forbidden => "refused",
    }
}
