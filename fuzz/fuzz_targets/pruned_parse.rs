//! The fast event model against a full parse: any text, any paths. Both pruned parses (the
//! `serde_json` one, `parse_pruned`, and the scanner the host runs, `parse_kept`, on lines
//! that start with `{`) must fail exactly when a full parse fails (same error), and every
//! path they cover must read the same as `deep_get` reads it on the full parse. The host's
//! `Event` (the scan, and a whole parse for a path not covered) must refuse a line exactly
//! as `parse_line` does, with its error, and read every path as a full parse does.
//!
//! Input: the first line is the JSON text; each further line is a path, keys separated by
//! `.`; the paths are wanted, then looked up, along with their prefixes and extensions.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

use rulehost::event::{Event, LineParse, Resolutions, WantedPaths};
use rulehost::input::{BatchLine, Line, LineBatch, parse_line};
use rulehost_event::{Found, Uncovered, Wanted, deep_get, parse_kept, parse_pruned};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let json = lines.next().unwrap_or_default();
    let paths: Vec<Vec<String>> = lines
        .take(8)
        .map(|l| l.split('.').map(str::to_owned).collect())
        .collect();
    let mut wanted = Wanted::nothing();
    for path in &paths {
        wanted.add(path);
    }
    host_event(json, &wanted, &paths);
    let full = serde_json::from_str::<Value>(json);
    if json.starts_with('{') {
        let kept = parse_kept(json, &wanted);
        match (&full, &kept) {
            (Err(f), Err(k)) => assert_eq!(f.to_string(), k.to_string(), "{json:?}"),
            (Ok(_), Err(k)) => {
                panic!("parse_kept failed where a full parse did not: {k}: {json:?}")
            }
            (Err(f), Ok(_)) => {
                panic!("parse_kept accepted what a full parse refused: {f}: {json:?}")
            }
            (Ok(full), Ok(kept)) => {
                for path in &paths {
                    let mut longer = path.clone();
                    longer.push("x".to_owned());
                    for len in 0..=longer.len() {
                        let prefix = &longer[..len];
                        let text = json.as_bytes();
                        if !wanted.covers(prefix) {
                            assert_eq!(
                                kept.get(text, &wanted, prefix),
                                Err(Uncovered),
                                "{prefix:?}"
                            );
                            continue;
                        }
                        assert_eq!(
                            kept.get(text, &wanted, prefix),
                            Ok(deep_get(full, prefix)),
                            "{prefix:?} in {json:?}"
                        );
                        let found = match kept.find(text, &wanted, prefix).unwrap() {
                            Some(Found::Text(t)) => {
                                Some(Value::from(std::str::from_utf8(t).unwrap()))
                            }
                            Some(Found::Value(v)) => Some(v.clone()),
                            None => None,
                        };
                        assert_eq!(
                            found.as_ref(),
                            deep_get(full, prefix),
                            "{prefix:?} in {json:?}"
                        );
                    }
                }
            }
        }
    }
    let pruned = parse_pruned(json, &wanted);
    match (&full, &pruned) {
        (Err(f), Err(p)) => assert_eq!(f.to_string(), p.to_string(), "{json:?}"),
        (Ok(_), Err(p)) => panic!("pruned parse failed where a full one did not: {p}: {json:?}"),
        (Err(f), Ok(_)) => panic!("pruned parse accepted what a full one refused: {f}: {json:?}"),
        (Ok(full), Ok(pruned)) => {
            if !full.is_object() {
                assert_eq!(
                    std::mem::discriminant(full),
                    std::mem::discriminant(pruned),
                    "{json:?}"
                );
                return;
            }
            for path in &paths {
                for len in 0..=path.len() {
                    let prefix = &path[..len];
                    if wanted.covers(prefix) {
                        assert_eq!(
                            deep_get(pruned, prefix),
                            deep_get(full, prefix),
                            "{prefix:?} in {json:?}"
                        );
                    }
                }
                let mut longer = path.clone();
                longer.push("x".to_owned());
                if wanted.covers(&longer) {
                    assert_eq!(deep_get(pruned, &longer), deep_get(full, &longer));
                }
            }
        }
    }
});

/// The host's `Event` on `json` as one line of a batch, against `parse_line`.
fn host_event(json: &str, wanted: &Wanted, paths: &[Vec<String>]) {
    let mut batch = LineBatch::with_capacity(json.len(), 1);
    batch.bytes.extend_from_slice(json.as_bytes());
    batch.lines.push(BatchLine {
        number: 1,
        start: 0,
        end: json.len(),
        too_long: false,
    });
    let batch = Arc::new(batch);
    let learned = Arc::new(WantedPaths::new(wanted.clone()));
    let from = Arc::new(LineParse::new(batch.clone(), learned.snapshot(), learned));
    let event = Event::parse(&from, &batch.lines[0]);
    match (parse_line(json.as_bytes()), event) {
        (Line::Bad(full), Err(bad)) => assert_eq!(full.to_string(), bad.to_string(), "{json:?}"),
        (Line::Blank, Ok(None)) => {}
        (Line::Event(full), Ok(Some(event))) => {
            // The same paths read resolved ahead (as a rule's packed fields are), each by
            // its own index.
            let (mut resolutions, mut index) = (Resolutions::default(), 0);
            for path in paths {
                let mut longer = path.clone();
                longer.push("x".to_owned());
                for len in 0..=longer.len() {
                    let prefix = &longer[..len];
                    assert_eq!(
                        event.get(prefix),
                        deep_get(&full, prefix),
                        "{prefix:?} in {json:?}"
                    );
                    index += 1;
                    assert_eq!(
                        event.find_resolved(prefix, index, &mut resolutions),
                        event.find(prefix),
                        "resolved: {prefix:?} in {json:?}"
                    );
                    let found = match event.find(prefix) {
                        Some(Found::Text(t)) => Some(Value::from(std::str::from_utf8(t).unwrap())),
                        Some(Found::Value(v)) => Some(v.clone()),
                        None => None,
                    };
                    assert_eq!(
                        found.as_ref(),
                        deep_get(&full, prefix),
                        "{prefix:?} in {json:?}"
                    );
                }
            }
            assert_eq!(event.whole_value(), &full, "{json:?}");
        }
        (full, event) => panic!(
            "Event::parse and parse_line disagree on {json:?}: {:?} / {:?}",
            matches!(full, Line::Event(_)),
            event.map(|e| e.is_some()).map_err(|e| e.to_string())
        ),
    }
}
