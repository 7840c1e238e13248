//! A rule that misbehaves when the event's `hostile` field asks it to: the sandbox tests
//! use it to show that a bad rule costs only itself.
//!
//! `hostile` values:
//! - `loop` (never returns), `panic`, `alloc` (grows memory without bound), `recurse`
//!   (overflows the stack), `error` (returns a rule error), `big-error` (returns a 2 MiB
//!   rule error);
//! - `print` (writes a line to stdout and stderr, then matches), `flood` (writes 4 MiB to
//!   each, then matches);
//! - `big-title` (matches with a 4 MiB title), `long-title` (a 10,000-character title);
//! - `env` (matches; the title counts environment variables and arguments), `clock` (matches; the title shows the wall clock, the monotonic clock and a
//!   hash keyed by std's random `HashMap` seed), `sleep` (sleeps an hour, then matches),
//!   `sleep-forever` (sleeps `Duration::MAX`, then matches);
//! - `match` (matches). Anything else does not match.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime};

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
            // Reserved, not written: the bomb reaches the memory cap in microseconds, far
            // inside the deadline even on a loaded machine.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(Vec::with_capacity(1 << 20));
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => Ok(recurse(std::hint::black_box(1)) > 0),
        "error" => Err("hostile rule raised an error".to_owned()),
        "big-error" => Err("e".repeat(2 << 20)),
        "print" => {
            println!("hello from the rule's stdout");
            eprintln!("hello from the rule's stderr");
            Ok(true)
        }
        "flood" => {
            let line = "x".repeat(1023);
            for _ in 0..4096 {
                println!("{line}");
                eprintln!("{line}");
            }
            Ok(true)
        }
        "sleep" => {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(true)
        }
        "sleep-forever" => {
            std::thread::sleep(Duration::MAX);
            Ok(true)
        }
        "big-title" | "long-title" | "env" | "clock" | "match" => Ok(true),
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
        "long-title" => "y".repeat(10_000),
        "env" => format!(
            "env={} args={}",
            std::env::vars_os().count(),
            std::env::args_os().count(),
        ),
        "clock" => {
            let start = Instant::now();
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(-1, |d| d.as_millis() as i128);
            // `RandomState` keys come from WASI random: a fixed seed makes this hash fixed.
            let hash = RandomState::new().hash_one("rulehost");
            format!(
                "wall_ms={wall} elapsed_ns={} hash={hash:016x}",
                start.elapsed().as_nanos()
            )
        }
        other => format!("hostile rule matched: {other}"),
    }
}

export_rule!(rule = rule, title = title);
