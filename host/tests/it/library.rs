//! The crate-level example, run for real.

use rulehost::clock::Clock;
use rulehost::eval::{Evaluator, Location};
use rulehost::runtime::{Limits, Runtime};
use rulehost::sink::JsonLines;

use crate::util::{components, rules_tests};

#[test]
fn readme_example() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    let rules = rulehost::ruleset::load(&runtime, &rules_tests(), &[components()]).unwrap();
    let mut out = Vec::new();
    let mut eval = Evaluator::new(
        rules.rules,
        Clock::default(),
        Box::new(JsonLines::new(&mut out)),
        Box::new(|w| eprintln!("{w}")),
    );
    let event = serde_json::json!({"actionName": "installLibraryOnAllClusters", "timestamp": 0});
    eval.event(
        &Location {
            file: "example".into(),
            line: 1,
        },
        event,
    )
    .unwrap();
    let summary = eval.finish().unwrap();
    assert_eq!(summary.alerts(), 1);
    let alert: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        alert["title"],
        "Library installed on all clusters in workspace Unknown Workspace by Unknown Actor"
    );
}
