//! Event ingestion: any bytes through the line reader and `parse_line`, then the event's
//! time and lookups the way `eval` reads them.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use rulehost::clock::{Clock, format_ms};
use rulehost::input::{Line, from_reader, parse_line};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // One line as `eval` classifies it.
    if let Line::Event(event) = parse_line(data) {
        read_event(&event);
    }
    // The same bytes as a file of lines, with a small line cap so overlong lines happen.
    let mut reader = from_reader(Cursor::new(data.to_vec()), 64);
    let mut last = 0;
    while let Some(Ok((number, line))) = reader.next_line() {
        assert!(number > last, "line numbers go up");
        last = number;
        if let Line::Event(event) = line {
            read_event(&event);
        }
    }
});

fn read_event(event: &Value) {
    for clock in [Clock::default(), Clock::new(["a.b", "timestamp"])] {
        if let Some(ms) = clock.event_time_ms(event) {
            let _ = format_ms(ms);
        }
    }
    // Every key path in the event must lead `deep_get` (which answers the rules' `get`
    // calls) back to the same value: an exact key wins over its case-insensitive fallback.
    walk(event, event, &mut Vec::new());
    for path in [&["userIdentity", "email"][..], &["TIMESTAMP"], &[""], &[]] {
        let _ = rulehost_event::deep_get(event, path);
    }
}

fn walk(root: &Value, value: &Value, path: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        return;
    };
    if path.len() >= 16 {
        return;
    }
    for (key, child) in object {
        path.push(key.clone());
        let found = rulehost_event::deep_get(root, path);
        assert!(
            found.is_some_and(|f| std::ptr::eq(f, child)),
            "deep_get({path:?}) did not find the value at that path"
        );
        walk(root, child, path);
        path.pop();
    }
}
