//! Spec loading: any text through `Spec::parse` (YAML, then validation). It must return a
//! spec or an error, never panic; an accepted spec must answer the questions `eval` asks.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rulehost::spec::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Spec::parse(Path::new("fuzz.yml"), text) {
        Ok(spec) => {
            let _ = spec.dedup_period_ms();
            let _ = spec.default_title();
            let _ = spec.severity.as_str();
            for case in &spec.tests {
                let _ = case.log.to_string();
            }
        }
        Err(e) => {
            // Errors render with their chain, as the CLI prints them.
            let _ = anyhow_like(&e);
        }
    }
});

fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
