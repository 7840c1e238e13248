//! Runs every `Tests:` case and `Scenarios:` entry under rules-tests/ as a named test, so
//! `cargo test --test rules -- AccessToMultipleWorkspaces` selects one rule and each rule
//! keeps its positive and negative cases beside its spec. Needs the components that
//! `make plugins` builds (`RULEHOST_COMPONENTS`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use rulehost::ruleset::{self, LoadedRule};
use rulehost::runtime::{Limits, Runtime};
use rulehost::testing::{CaseResult, run_case, run_scenario};

fn main() {
    let args = Arguments::from_args();
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules-tests");
    let components = std::env::var_os("RULEHOST_COMPONENTS")
        .map(PathBuf::from)
        .expect("RULEHOST_COMPONENTS is not set: run the tests with `make test`");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let set = ruleset::load(&runtime, &rules_dir, &[components]).expect("rules-tests/ loads");
    let mut trials: Vec<Trial> = set
        .invalid
        .into_iter()
        .map(|(path, err)| {
            let message = format!("{err:#}");
            Trial::test(format!("invalid::{}", path.display()), move || {
                Err(message.into())
            })
        })
        .collect();
    for rule in set.rules {
        let rule = Arc::new(rule);
        for index in 0..rule.spec.tests.len() {
            let r = rule.clone();
            let name = format!("{}::{}", r.spec.rule_id, r.spec.tests[index].name);
            trials.push(Trial::test(name, move || {
                verdict(run_case(&r, &r.spec.tests[index]))
            }));
        }
        for index in 0..rule.spec.scenarios.len() {
            let r: Arc<LoadedRule> = rule.clone();
            let name = format!(
                "{}::scenario::{}",
                r.spec.rule_id, r.spec.scenarios[index].name
            );
            trials.push(Trial::test(name, move || {
                verdict(run_scenario(&r, &r.spec.scenarios[index]))
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn verdict(case: CaseResult) -> Result<(), Failed> {
    if case.passed {
        return Ok(());
    }
    let lines: Vec<String> = case
        .functions
        .iter()
        .filter(|f| !f.passed)
        .map(|f| format!("[{}] {}", f.function, f.text))
        .collect();
    Err(lines.join("\n").into())
}
