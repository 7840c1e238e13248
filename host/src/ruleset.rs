//! [`RuleSet`]: the specs of a rule directory, each with its compiled component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::runtime::{RuleComponent, Runtime};
use crate::spec::{Spec, find_specs};

/// A spec and its compiled component.
#[derive(Clone)]
pub struct LoadedRule {
    /// The validated YAML.
    pub spec: Spec,
    /// The compiled component.
    pub component: RuleComponent,
}

/// Everything loaded from one or more rule directories.
pub struct RuleSet {
    /// Rules that loaded, sorted by RuleID.
    pub rules: Vec<LoadedRule>,
    /// Files that did not load, each with its full error.
    pub invalid: Vec<(PathBuf, anyhow::Error)>,
}

/// Loads every spec under `dir`, resolving `Filename:` against the spec's folder, then
/// `components`. A component shared by several specs is compiled once.
pub fn load(runtime: &Runtime, dir: &Path, components: &[PathBuf]) -> anyhow::Result<RuleSet> {
    use anyhow::Context as _;
    let paths = find_specs(dir)
        .with_context(|| format!("failed to read rule directory `{}`", dir.display()))?;
    let mut compiled: HashMap<PathBuf, RuleComponent> = HashMap::new();
    let mut rules: Vec<LoadedRule> = Vec::new();
    let mut invalid = Vec::new();
    for path in paths {
        let loaded = Spec::load(&path)
            .map_err(anyhow::Error::from)
            .and_then(|spec| {
                let wasm = spec.resolve_component(components)?;
                let component = match compiled.get(&wasm) {
                    Some(c) => c.clone(),
                    None => {
                        let c = runtime
                            .load(&wasm)
                            .with_context(|| format!("failed to load rule `{}`", spec.rule_id))?;
                        compiled.insert(wasm, c.clone());
                        c
                    }
                };
                Ok(LoadedRule { spec, component })
            });
        match loaded {
            Ok(rule) => match rules.iter().find(|r| r.spec.rule_id == rule.spec.rule_id) {
                Some(first) => invalid.push((
                    path,
                    anyhow::anyhow!(
                        "duplicate RuleID `{}`: already defined in `{}`",
                        rule.spec.rule_id,
                        first.spec.path.display()
                    ),
                )),
                None => rules.push(rule),
            },
            Err(e) => invalid.push((path, e)),
        }
    }
    rules.sort_by(|a, b| a.spec.rule_id.cmp(&b.spec.rule_id));
    Ok(RuleSet { rules, invalid })
}
