//! [`Metrics`]: what `rulehost serve --metrics-addr` shows, in Prometheus' text format, and
//! its `/healthz`. A plain HTTP/1.0 responder on one thread: two fixed pages need no
//! framework.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::eval::MatchCounts;

/// The latest numbers of a serve loop, rendered on request.
#[derive(Default)]
pub struct Metrics {
    /// The page, rendered by the serve loop ([`Metrics::update`]).
    page: Mutex<String>,
    /// Subscribed and connected to Redis: `/healthz` answers 200.
    pub ready: AtomicBool,
}

/// What the serve loop measured besides the stage's counts.
#[derive(Debug, Default, Clone)]
pub struct LoopNumbers {
    /// Seconds spent parsing and calling rules, and batches.
    pub eval_seconds: f64,
    /// Batches evaluated.
    pub batches: u64,
    /// Seconds spent applying batches to Redis.
    pub redis_seconds: f64,
    /// Round trips to Redis.
    pub redis_round_trips: u64,
    /// Script calls made again with the fields of a window's first match.
    pub redis_field_requests: u64,
    /// Aggregated script calls made again match by match.
    pub redis_detail_requests: u64,
    /// Windows closed.
    pub windows_closed: u64,
    /// Consumer lag per partition held.
    pub lag: Vec<(i32, i64)>,
    /// Records the forwarder delivered.
    pub delivered: u64,
    /// Rule set reloads, and failed ones.
    pub reloads: u64,
    /// Failed reloads.
    pub failed_reloads: u64,
}

impl Metrics {
    /// Renders the page from the stage's `counts` and the loop's `numbers`.
    pub fn update(&self, counts: &MatchCounts, numbers: &LoopNumbers) {
        let mut page = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(page, "{name}{labels} {value}");
            }
        };
        let plain = |v: String| vec![(String::new(), v)];
        family(
            "rulehost_events_total",
            "counter",
            "Events evaluated.",
            plain(counts.events.to_string()),
        );
        family(
            "rulehost_bad_lines_total",
            "counter",
            "Messages that were not JSON objects (each reported with topic/partition:offset).",
            plain(counts.bad_lines.to_string()),
        );
        family(
            "rulehost_events_ahead_of_clock_total",
            "counter",
            "Events too far ahead of their partition's event-time clock to move it \
             (--max-clock-skew): windowed at the clock's time.",
            plain(counts.ahead_of_clock.to_string()),
        );
        family(
            "rulehost_events_held",
            "gauge",
            "Partitions whose last event waits for the next to decide whether its time moves \
             the clock (its offset is not committed until then).",
            plain(counts.held.to_string()),
        );
        let per_rule = |f: &dyn Fn(&crate::eval::RuleStats) -> u64| {
            counts
                .rules
                .iter()
                .map(|(id, s)| (format!("{{rule=\"{}\"}}", escape(id)), f(s).to_string()))
                .collect::<Vec<_>>()
        };
        family(
            "rulehost_matches_total",
            "counter",
            "Matches per rule.",
            per_rule(&|s| s.matches),
        );
        family(
            "rulehost_alerts_total",
            "counter",
            "Alerts this worker created in the state, per rule.",
            per_rule(&|s| s.alerts),
        );
        family(
            "rulehost_rule_errors_total",
            "counter",
            "Events on which a rule failed, per rule.",
            per_rule(&|s| s.rule_errors),
        );
        family(
            "rulehost_rule_error_records_total",
            "counter",
            "rule_error records this worker created in the state (one per error kind per \
             period), per rule.",
            per_rule(&|s| s.error_records),
        );
        family(
            "rulehost_path_mismatches_total",
            "counter",
            "Checked evaluate-batch calls whose results disagreed with one call per function, \
             per rule (each quarantines the rule).",
            per_rule(&|s| s.path_mismatches),
        );
        family(
            "rulehost_quarantined",
            "gauge",
            "1 while this worker does not call the rule (until the rules are loaded again).",
            per_rule(&|s| u64::from(s.quarantined_at.is_some())),
        );
        family(
            "rulehost_aux_errors_total",
            "counter",
            "Failed calls of functions other than rule, per rule.",
            per_rule(&|s| s.aux_errors),
        );
        family(
            "rulehost_consumer_lag",
            "gauge",
            "Messages between this worker's position and the end of each partition it holds.",
            numbers
                .lag
                .iter()
                .map(|(p, lag)| (format!("{{partition=\"{p}\"}}"), lag.to_string()))
                .collect(),
        );
        family(
            "rulehost_eval_seconds",
            "summary",
            "Time to parse a batch and call the rules on it (rule call latency per batch).",
            vec![
                ("_sum".to_owned(), format!("{:.6}", numbers.eval_seconds)),
                ("_count".to_owned(), numbers.batches.to_string()),
            ],
        );
        family(
            "rulehost_redis_apply_seconds",
            "summary",
            "Time to apply a batch's matches to Redis.",
            vec![
                ("_sum".to_owned(), format!("{:.6}", numbers.redis_seconds)),
                ("_count".to_owned(), numbers.batches.to_string()),
            ],
        );
        family(
            "rulehost_redis_round_trips_total",
            "counter",
            "Round trips to Redis for batches.",
            plain(numbers.redis_round_trips.to_string()),
        );
        family(
            "rulehost_redis_field_requests_total",
            "counter",
            "Script calls made again with the alert fields of a match that opened a window \
             (the worker's guess missed it).",
            plain(numbers.redis_field_requests.to_string()),
        );
        family(
            "rulehost_redis_detail_requests_total",
            "counter",
            "Aggregated script calls made again match by match (a batch applied before, or a \
             window boundary the worker's guess missed).",
            plain(numbers.redis_detail_requests.to_string()),
        );
        family(
            "rulehost_windows_closed_total",
            "counter",
            "Windows closed by this worker.",
            plain(numbers.windows_closed.to_string()),
        );
        family(
            "rulehost_outbox_delivered_total",
            "counter",
            "Outbox records this worker delivered to its sinks.",
            plain(numbers.delivered.to_string()),
        );
        family(
            "rulehost_reloads_total",
            "counter",
            "Rule set reloads (and failed ones, which kept the old set).",
            vec![
                ("{result=\"ok\"}".to_owned(), numbers.reloads.to_string()),
                (
                    "{result=\"failed\"}".to_owned(),
                    numbers.failed_reloads.to_string(),
                ),
            ],
        );
        // The summaries' `_sum` and `_count` rows are written as suffixes in the label slot.
        *self.page.lock().expect("metrics page") = page;
    }

    /// Serves `/metrics` and `/healthz` on `addr` from a thread of its own.
    pub fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let metrics = self.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    // The request head, up to its blank line (it may come in pieces).
                    let mut request = [0u8; 1024];
                    let mut n = 0;
                    while n < request.len() && !request[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut request[n..]) {
                            Ok(0) | Err(_) => break,
                            Ok(read) => n += read,
                        }
                    }
                    let head = String::from_utf8_lossy(&request[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let (status, body) = match path {
                        "/metrics" => ("200 OK", metrics.page.lock().expect("page").clone()),
                        "/healthz" if metrics.ready.load(Ordering::Relaxed) => {
                            ("200 OK", "ok\n".to_owned())
                        }
                        "/healthz" => ("503 Service Unavailable", "starting\n".to_owned()),
                        _ => ("404 Not Found", "not found\n".to_owned()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            })?;
        Ok(bound)
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
