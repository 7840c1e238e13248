//! `rulehost test`: run specs' `Tests:` through their components, like `pat test`.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::commands::RuleArgs;
use crate::ruleset;
use crate::runtime::Runtime;
use crate::testing::{SpecFilter, run_rule_tests};

/// Run the `Tests:` of Panther-format rule specs through their components.
///
/// Exit status: 0 when every test passes; 1 when a test fails; 2 when a spec or component
/// could not be loaded.
#[derive(Debug, Parser)]
pub struct Test {
    /// Folder of rule specs (searched recursively).
    #[arg(value_name = "DIR", default_value = ".")]
    path: PathBuf,
    /// Only specs whose KEY has one of the values (`RuleID=A,B`); `KEY!=V` inverts.
    /// Repeatable: all filters must hold.
    #[arg(long, value_name = "KEY=V1,V2")]
    filter: Vec<SpecFilter>,
    #[command(flatten)]
    rule_args: RuleArgs,
}

impl Test {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let runtime = Runtime::new(self.rule_args.limits())?;
        let set = ruleset::load(&runtime, &self.path, &self.rule_args.components)?;
        let mut passed_rules = 0;
        let mut failed: Vec<(String, Vec<String>)> = Vec::new();
        let (mut cases_passed, mut cases_failed) = (0u64, 0u64);
        for rule in set
            .rules
            .iter()
            .filter(|r| self.filter.iter().all(|f| f.matches(&r.spec)))
        {
            println!("{}", rule.spec.rule_id);
            if rule.spec.tests.is_empty() {
                println!("\tNo tests configured for {}", rule.spec.rule_id);
            }
            let mut failures = Vec::new();
            for case in run_rule_tests(rule) {
                for (stream, text) in [("stdout", &case.output.0), ("stderr", &case.output.1)] {
                    for line in text.lines() {
                        println!("\t({stream}) {line}");
                    }
                }
                println!("\t{} {}", mark(case.passed), case.name);
                for f in &case.functions {
                    println!("\t\t{} [{}] {}", mark(f.passed), f.function, f.text);
                    if !f.passed {
                        failures.push(format!("{}:{}", case.name, f.function));
                    }
                }
                if case.passed {
                    cases_passed += 1;
                } else {
                    cases_failed += 1;
                }
            }
            println!();
            if failures.is_empty() {
                passed_rules += 1;
            } else {
                failed.push((rule.spec.rule_id.clone(), failures));
            }
        }
        if !failed.is_empty() {
            println!("--------------------------");
            println!("Failed Tests Summary");
            for (id, names) in &failed {
                println!("\t{id}\n\t\t{names:?}");
            }
        }
        if !set.invalid.is_empty() {
            println!("--------------------------");
            println!("Invalid Tests Summary");
            for (path, err) in &set.invalid {
                println!("\t{}\n\t\t{err:#}", path.display());
            }
        }
        println!("--------------------------");
        println!("Test Summary");
        println!("\tPath: {}", self.path.display());
        println!("\tPassed: {passed_rules}");
        println!("\tFailed: {}", failed.len());
        println!("\tInvalid: {}", set.invalid.len());
        println!();
        println!("{cases_passed} passed, {cases_failed} failed");
        Ok(if !set.invalid.is_empty() {
            ExitStatus::Error
        } else if !failed.is_empty() {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        })
    }
}

fn mark(passed: bool) -> &'static str {
    if passed { "[PASS]" } else { "[FAIL]" }
}
