//! A rule that misbehaves when the event's `hostile` field asks it to: the sandbox tests
//! use it to show that a bad rule costs only itself.
//!
//! `hostile` values: `loop` (never returns), `panic`, `alloc` (grows memory without
//! bound), `recurse` (overflows the stack), `error` (returns a rule error), `print`
//! (writes to stdout and stderr, then matches), `big-title` (matches with a 4 MiB title),
//! `match` (matches). Anything else does not match.

use rulehost_sdk::{Event, export_rule};

fn mode(event: &Event) -> String {
    event.get_str("hostile").unwrap_or_default()
}

fn rule(event: &Event) -> Result<bool, String> {
    match mode(event).as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "panic" => panic!("hostile rule panicked on purpose"),
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => Ok(recurse(std::hint::black_box(1)) > 0),
        "error" => Err("hostile rule raised an error".to_owned()),
        "print" => {
            println!("hello from the rule's stdout");
            eprintln!("hello from the rule's stderr");
            Ok(true)
        }
        "big-title" | "match" => Ok(true),
        _ => Ok(false),
    }
}

#[expect(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(frame[0] + 1) + frame[63]
}

fn title(event: &Event) -> String {
    match mode(event).as_str() {
        "big-title" => "x".repeat(4 << 20),
        other => format!("hostile rule matched: {other}"),
    }
}

export_rule!(rule = rule, title = title);
