//! `rulehost test`: run specs' `Tests:` and `Scenarios:` through their components, like
//! `pat test`, plus output assertions, multi-event scenarios and JSON results.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::cli::ExitStatus;
use crate::commands::RuleArgs;
use crate::testing::{RuleReport, RuleStatus, SpecFilter, TestSelection, run_rule};

/// Run the `Tests:` and `Scenarios:` of Panther-format rule specs through their components.
///
/// Exit status: 0 when every selected test passes; 1 when a test fails (any function
/// error counts, `unique` included) or a rule has too few tests; 2 when a spec or
/// component could not be loaded.
#[derive(Debug, Parser)]
pub struct Test {
    /// Folder of rule specs (searched recursively).
    #[arg(value_name = "DIR", default_value = ".")]
    path: PathBuf,
    /// Only specs whose KEY has one of the values (`RuleID=A,B`, case-insensitive);
    /// `KEY!=V` inverts. Repeatable: all filters must hold.
    #[arg(long, value_name = "KEY=V1,V2")]
    filter: Vec<SpecFilter>,
    /// Fail rules with fewer tests; above 1, also require one true and one false case.
    #[arg(long, value_name = "N", default_value_t = 0)]
    minimum_tests: usize,
    /// Only run tests (or scenarios) with this name; repeatable. Rules with none are skipped.
    #[arg(long = "test-names", value_name = "NAME")]
    test_names: Vec<String>,
    /// Print only failing tests (the summary is always printed).
    #[arg(long)]
    show_failures_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    rule_args: RuleArgs,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// pat-style text.
    Text,
    /// One JSON document, for CI and PR comments.
    Json,
}

/// Which tests to print in text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    All,
    FailuresOnly,
}

/// The whole run, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    path: String,
    rules: Vec<RuleReport>,
    invalid: Vec<Invalid>,
    summary: Totals,
}

#[derive(Debug, Serialize)]
struct Invalid {
    path: String,
    error: String,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    rules_passed: usize,
    rules_failed: usize,
    rules_skipped: usize,
    invalid: usize,
    tests_passed: usize,
    tests_failed: usize,
}

impl Test {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        // `_runtime` stays alive with the rules: it drives their deadlines.
        let Some((_runtime, set)) = self.rule_args.load_rules(&self.path)? else {
            return Ok(ExitStatus::Error);
        };
        let selection = TestSelection {
            names: self.test_names.clone(),
            minimum_tests: self.minimum_tests,
        };
        let rules: Vec<RuleReport> = set
            .rules
            .iter()
            .filter(|r| self.filter.iter().all(|f| f.matches(&r.spec)))
            .map(|r| run_rule(r, &selection))
            .collect();
        let invalid: Vec<Invalid> = set
            .invalid
            .iter()
            .map(|(p, e)| Invalid {
                path: p.display().to_string(),
                error: format!("{e:#}"),
            })
            .collect();
        let mut totals = Totals {
            invalid: invalid.len(),
            ..Totals::default()
        };
        for rule in &rules {
            match rule.status {
                RuleStatus::Passed => totals.rules_passed += 1,
                RuleStatus::Failed => totals.rules_failed += 1,
                RuleStatus::Skipped => totals.rules_skipped += 1,
            }
            totals.tests_passed += rule.cases.iter().filter(|c| c.passed).count();
            totals.tests_failed += rule.cases.iter().filter(|c| !c.passed).count();
        }
        let status = if totals.invalid > 0 {
            ExitStatus::Error
        } else if totals.rules_failed > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        };
        let report = Report {
            path: self.path.display().to_string(),
            rules,
            invalid,
            summary: totals,
        };
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => {
                let show = if self.show_failures_only {
                    Show::FailuresOnly
                } else {
                    Show::All
                };
                print_text(&report, show);
            }
        }
        Ok(status)
    }
}

fn mark(passed: bool) -> &'static str {
    if passed { "[PASS]" } else { "[FAIL]" }
}

fn print_text(report: &Report, show: Show) {
    for rule in &report.rules {
        let cases: Vec<_> = rule
            .cases
            .iter()
            .filter(|c| show == Show::All || !c.passed)
            .collect();
        if show == Show::FailuresOnly && cases.is_empty() && rule.problems.is_empty() {
            continue;
        }
        println!("{}", rule.rule_id);
        if rule.cases.is_empty() && rule.status != RuleStatus::Skipped {
            println!("\tNo tests configured for {}", rule.rule_id);
        }
        if rule.status == RuleStatus::Skipped {
            println!("\tNo tests match the provided test names");
        }
        for problem in &rule.problems {
            println!("\t[FAIL] {problem}");
        }
        for case in cases {
            for (stream, text, dropped) in [
                ("stdout", &case.stdout, case.stdout_dropped),
                ("stderr", &case.stderr, case.stderr_dropped),
            ] {
                for line in text.lines() {
                    println!("\t({stream}) {line}");
                }
                if dropped > 0 {
                    println!("\t({stream}) [truncated: {dropped} more bytes dropped]");
                }
            }
            println!("\t{} {}", mark(case.passed), case.name);
            for f in &case.functions {
                println!("\t\t{} [{}] {}", mark(f.passed), f.function, f.text);
            }
        }
        println!();
    }
    let failed: Vec<&RuleReport> = report
        .rules
        .iter()
        .filter(|r| r.status == RuleStatus::Failed)
        .collect();
    if !failed.is_empty() {
        println!("--------------------------");
        println!("Failed Tests Summary");
        for rule in failed {
            let mut names: Vec<String> = rule.problems.clone();
            for case in rule.cases.iter().filter(|c| !c.passed) {
                for f in case.functions.iter().filter(|f| !f.passed) {
                    names.push(format!("{}:{}", case.name, f.function));
                }
            }
            println!("\t{}\n\t\t{names:?}", rule.rule_id);
        }
    }
    let skipped: Vec<&RuleReport> = report
        .rules
        .iter()
        .filter(|r| r.status == RuleStatus::Skipped)
        .collect();
    if !skipped.is_empty() {
        println!("--------------------------");
        println!("Skipped Tests Summary");
        for rule in skipped {
            println!("\t{}", rule.rule_id);
        }
    }
    if !report.invalid.is_empty() {
        println!("--------------------------");
        println!("Invalid Tests Summary");
        for invalid in &report.invalid {
            println!("\t{}\n\t\t{}", invalid.path, invalid.error);
        }
    }
    let t = &report.summary;
    println!("--------------------------");
    println!("Test Summary");
    println!("\tPath: {}", report.path);
    println!("\tPassed: {}", t.rules_passed);
    println!("\tSkipped: {}", t.rules_skipped);
    println!("\tFailed: {}", t.rules_failed);
    println!("\tInvalid: {}", t.invalid);
    println!();
    println!("{} passed, {} failed", t.tests_passed, t.tests_failed);
}
