//! `rulehost debug`: run one test of one rule and show everything it printed.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::commands::RuleArgs;
use crate::testing::{TestSelection, run_rule};

/// Run one test (or scenario) of one rule, passing through what the rule printed to its
/// stdout and stderr, then each function's result.
///
/// Exit status: 0 when the test passes, 1 when it fails, 2 when the rule or test is not
/// found or cannot be loaded.
#[derive(Debug, Parser)]
pub struct Debug {
    /// The rule's `RuleID`.
    rule_id: String,
    /// The test's `Name`.
    test_name: String,
    /// Folder of rule specs (searched recursively).
    #[arg(long, value_name = "DIR", default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    rule_args: RuleArgs,
}

impl Debug {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        // `_runtime` stays alive with the rules: it drives their deadlines.
        let Some((_runtime, set)) = self.rule_args.load_rules(&self.path)? else {
            return Ok(ExitStatus::Error);
        };
        let Some(rule) = set.rules.iter().find(|r| r.spec.rule_id == self.rule_id) else {
            let known: Vec<&str> = set.rules.iter().map(|r| r.spec.rule_id.as_str()).collect();
            anyhow::bail!(
                "no rule `{}` in `{}` (found: {})",
                self.rule_id,
                self.path.display(),
                known.join(", ")
            );
        };
        let selection = TestSelection {
            names: vec![self.test_name.clone()],
            minimum_tests: 0,
        };
        let report = run_rule(rule, &selection);
        let Some(case) = report.cases.first() else {
            let mut names: Vec<&str> = rule.spec.tests.iter().map(|t| t.name.as_str()).collect();
            names.extend(rule.spec.scenarios.iter().map(|s| s.name.as_str()));
            anyhow::bail!(
                "rule `{}` has no test `{}` (its tests: {})",
                self.rule_id,
                self.test_name,
                names.join(", ")
            );
        };
        std::io::stdout().write_all(case.stdout.as_bytes())?;
        std::io::stderr().write_all(case.stderr.as_bytes())?;
        for f in &case.functions {
            println!("[{}] {}", f.function, f.text);
        }
        Ok(if case.passed {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        })
    }
}
