//! [`Event`]: one parsed event as the host hands it to rules, filters and the clock.
//!
//! A worker parses each line once, keeping only what the run is known to read
//! ([`rulehost_event::parse_kept`] with the run's [`WantedPaths`]): the filters' and the
//! clock's fields from the start, and every path a rule has read. A read of a path the
//! pruned parse does not cover is answered from a full parse of the line (made once per
//! event, on first need), and the path is learned: the next line batches keep it. So every
//! read gives exactly what a full parse gives, whichever fields a rule reads and whenever
//! it first reads them, and once learned a path costs only its own value.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rulehost_event::{
    Found, Kept, Raw, Resolved, Uncovered, Wanted, deep_get, digits_u64, parse_kept,
};
use serde_json::Value;

use crate::clock::parse_time_ms;
use crate::input::{BadLine, BatchLine, LineBatch, line_text, refuse_root};

/// Paths learned from reads before every path is kept whole: a rule that reads paths made
/// from event data (each event a new key) would otherwise grow the tree without end.
const MAX_LEARNED: usize = 256;

/// An event: parsed whole, or pruned with its line kept to parse whole on demand.
#[derive(Debug)]
pub struct Event(Parsed);

#[derive(Debug)]
enum Parsed {
    Whole(Value),
    Pruned(Pruned),
}

#[derive(Debug)]
struct Pruned {
    /// What the pruned parse kept.
    kept: Kept,
    /// The batch, the paths kept and where a missed read is recorded.
    from: Arc<LineParse>,
    /// The line's bytes in the batch.
    line: Range<usize>,
    full: OnceLock<Value>,
}

/// What the events a worker parses from one line batch share: the batch, the paths they
/// are parsed for, and where a read that was not covered is recorded. An event holds one
/// reference to it, made and dropped by the thread that parses: a reference count shared
/// with other threads would move its cache line between cores twice per event.
#[derive(Debug)]
pub struct LineParse {
    batch: Arc<LineBatch>,
    wanted: Arc<Wanted>,
    paths: Arc<WantedPaths>,
}

impl LineParse {
    /// Events of `batch` parsed for `wanted`; missed reads go to `paths`.
    pub fn new(batch: Arc<LineBatch>, wanted: Arc<Wanted>, paths: Arc<WantedPaths>) -> Self {
        LineParse {
            batch,
            wanted,
            paths,
        }
    }
}

impl Event {
    /// An event parsed whole.
    pub fn whole(value: Value) -> Self {
        Event(Parsed::Whole(value))
    }

    /// Parses `line` of `from`'s batch keeping what its wanted paths cover (`None`: a blank
    /// line); reads they do not cover are answered from a full parse of the line, and
    /// recorded in its [`WantedPaths`]. A line is refused exactly when a full parse refuses
    /// it, with its error.
    pub fn parse(from: &Arc<LineParse>, line: &BatchLine) -> Result<Option<Self>, BadLine> {
        let wanted = &from.wanted;
        let bytes = from.batch.bytes_of(line);
        let Some(text) = line_text(bytes)? else {
            return Ok(None);
        };
        if wanted.is_everything() || !text.starts_with('{') {
            // Whole, or not an object: a full parse says what is wrong with it.
            let value = serde_json::from_str(text).map_err(|e| BadLine::Json(e.to_string()))?;
            refuse_root(&value)?;
            return Ok(Some(Event::whole(value)));
        }
        let kept = parse_kept(text, wanted).map_err(|e| BadLine::Json(e.to_string()))?;
        // `text` is `bytes` trimmed: where it lies in the batch.
        let start = line.start + (text.as_ptr() as usize - bytes.as_ptr() as usize);
        Ok(Some(Event(Parsed::Pruned(Pruned {
            kept,
            from: from.clone(),
            line: start..start + text.len(),
            full: OnceLock::new(),
        }))))
    }

    /// Panther's `deep_get` walk ([`rulehost_event::deep_get`]), exactly as on the whole
    /// event.
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        match &self.0 {
            Parsed::Whole(value) => deep_get(value, path),
            Parsed::Pruned(pruned) => {
                match pruned.kept.get(pruned.text(), &*pruned.from.wanted, path) {
                    Ok(found) => found,
                    Err(Uncovered) => {
                        pruned.from.paths.missed(path);
                        deep_get(pruned.full(), path)
                    }
                }
            }
        }
    }

    /// [`Event::get`], with a string that has no escapes read straight from the line, not
    /// copied ([`Found::Text`]).
    pub fn find<S: AsRef<str>>(&self, path: &[S]) -> Option<Found<'_>> {
        if let Parsed::Pruned(pruned) = &self.0
            && let Ok(found) = pruned.kept.find(pruned.text(), &*pruned.from.wanted, path)
        {
            return found;
        }
        self.get(path).map(Found::Value)
    }

    /// [`Event::find`] of `path`, the `index`th of a caller's fixed paths, resolved
    /// through `resolutions` (once per tree of wanted paths, not per event).
    pub fn find_resolved<S: AsRef<str>>(
        &self,
        path: &[S],
        index: usize,
        resolutions: &mut Resolutions,
    ) -> Option<Found<'_>> {
        if let Parsed::Pruned(pruned) = &self.0
            && let Some(resolved) = resolutions.get(&pruned.from.wanted, index, path)
        {
            return pruned
                .kept
                .find(pruned.text(), resolved, path)
                .expect("a resolved path is covered");
        }
        self.find(path)
    }

    /// The whole event (parsed now, if it was pruned).
    pub fn whole_value(&self) -> &Value {
        match &self.0 {
            Parsed::Whole(value) => value,
            Parsed::Pruned(pruned) => pruned.full(),
        }
    }
}

/// Paths read from event after event (a rule's packed fields, the clock's), each resolved
/// against the tree of wanted paths the events were parsed for ([`Resolved`]) when first
/// read, and again only when that tree changes: a read then makes no lookups in the tree.
#[derive(Debug, Clone, Default)]
pub struct Resolutions {
    /// The tree they are resolved against.
    wanted: Option<Arc<Wanted>>,
    /// By the caller's index of the path; `None`: not read since the tree changed.
    paths: Vec<Option<Result<Resolved, Uncovered>>>,
}

impl Resolutions {
    /// `path`, the caller's `index`th, resolved against `wanted`; `None` when not covered.
    fn get<S: AsRef<str>>(
        &mut self,
        wanted: &Arc<Wanted>,
        index: usize,
        path: &[S],
    ) -> Option<&Resolved> {
        if !self.wanted.as_ref().is_some_and(|w| Arc::ptr_eq(w, wanted)) {
            self.wanted = Some(wanted.clone());
            self.paths.clear();
        }
        if self.paths.len() <= index {
            self.paths.resize(index + 1, None);
        }
        self.paths[index]
            .get_or_insert_with(|| wanted.resolve(path))
            .as_ref()
            .ok()
    }
}

/// What the host's own reads (filters, the clock) take: a parsed event, whole or not.
pub trait Lookup {
    /// [`rulehost_event::deep_get`] on the whole event.
    fn lookup<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value>;

    /// [`Lookup::lookup`], with a string that has no escapes read straight from the line
    /// where the event keeps it ([`Event::find`]).
    fn find_text<S: AsRef<str>>(&self, path: &[S]) -> Option<Found<'_>> {
        self.lookup(path).map(Found::Value)
    }

    /// [`parse_time_ms`] of the value at `path`, the `index`th of a caller's fixed paths
    /// (resolved through `resolutions` where that saves work).
    fn time_ms<S: AsRef<str>>(
        &self,
        path: &[S],
        _index: usize,
        _resolutions: &mut Resolutions,
    ) -> Option<i64> {
        self.lookup(path).and_then(parse_time_ms)
    }
}

impl Lookup for Value {
    fn lookup<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        deep_get(self, path)
    }
}

impl Lookup for Event {
    fn lookup<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        self.get(path)
    }

    fn find_text<S: AsRef<str>>(&self, path: &[S]) -> Option<Found<'_>> {
        self.find(path)
    }

    /// Epoch milliseconds written as plain digits (the common case) are read from the
    /// line without building a value, in the one walk that finds them.
    fn time_ms<S: AsRef<str>>(
        &self,
        path: &[S],
        index: usize,
        resolutions: &mut Resolutions,
    ) -> Option<i64> {
        if let Parsed::Pruned(pruned) = &self.0
            && let Some(resolved) = resolutions.get(&pruned.from.wanted, index, path)
        {
            match pruned.kept.raw(pruned.text(), resolved, path) {
                Ok(Raw::Missing) => return None,
                Ok(Raw::Text(text)) if let Some(ms) = plain_i64(text) => return Some(ms),
                Ok(Raw::Text(_) | Raw::Built) | Err(Uncovered) => {}
            }
        }
        self.get(path).and_then(parse_time_ms)
    }
}

/// What both `as_i64` on a number of plain ASCII digits and `parse` of a string of them
/// give, when they fit an `i64`.
fn plain_i64(text: &[u8]) -> Option<i64> {
    digits_u64(text).and_then(|n| i64::try_from(n).ok())
}

impl Pruned {
    /// The line, as parsed.
    fn text(&self) -> &[u8] {
        &self.from.batch.bytes[self.line.clone()]
    }

    fn full(&self) -> &Value {
        self.full.get_or_init(|| {
            let started = Instant::now();
            let value =
                serde_json::from_slice(self.text()).expect("the line parsed before, pruned");
            FULL_PARSES.with(|spent| spent.set(spent.get() + started.elapsed()));
            value
        })
    }
}

thread_local! {
    /// Time this thread spent parsing whole lines for reads not covered (see
    /// [`take_full_parse_time`]).
    static FULL_PARSES: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// The time this thread spent parsing whole lines since the last call, for reads the pruned
/// parse did not cover. That cost is the host's, not the rule's: a call whose reads made
/// the host parse a long line gets that time back on its deadline (see the runtime), so a
/// rule is never timed out for a parse of the host's. It is bounded: one parse per event.
pub fn take_full_parse_time() -> Duration {
    FULL_PARSES.with(|spent| spent.replace(Duration::ZERO))
}

/// The paths a run's events are parsed for: given at load (filters, the clock) and learned
/// from the reads of rules. Shared by the run's workers; each takes a
/// [`snapshot`](WantedPaths::snapshot) per line batch.
#[derive(Debug)]
pub struct WantedPaths {
    current: RwLock<Arc<Wanted>>,
    /// Reads that were not covered since the last [`WantedPaths::snapshot`].
    missed: Mutex<Vec<Vec<String>>>,
    /// Paths learned so far, against [`MAX_LEARNED`].
    learned: Mutex<usize>,
    /// Reads were missed since the last snapshot, or a snapshot changed what is wanted
    /// since this counter was last read: [`WantedPaths::update`] takes a new snapshot.
    missed_any: AtomicBool,
    generation: AtomicU64,
}

impl Default for WantedPaths {
    /// Every path: events are parsed whole.
    fn default() -> Self {
        WantedPaths::new(Wanted::everything())
    }
}

impl WantedPaths {
    /// Starting from `wanted`.
    pub fn new(wanted: Wanted) -> Self {
        WantedPaths {
            current: RwLock::new(Arc::new(wanted)),
            missed: Mutex::default(),
            learned: Mutex::new(0),
            missed_any: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Records a read the pruned parse did not cover.
    pub fn missed<S: AsRef<str>>(&self, path: &[S]) {
        let mut missed = self.missed.lock().unwrap_or_else(PoisonError::into_inner);
        let known = missed
            .iter()
            .any(|m| m.len() == path.len() && m.iter().zip(path).all(|(a, b)| a == b.as_ref()));
        if !known && missed.len() < MAX_LEARNED {
            missed.push(path.iter().map(|k| k.as_ref().to_owned()).collect());
            self.missed_any.store(true, Ordering::Release);
        }
    }

    /// Replaces `snapshot` (taken at `generation`) with a new one if reads were missed or
    /// what is wanted changed since (`true`): cheap enough to call before each line.
    pub fn update(&self, snapshot: &mut Arc<Wanted>, generation: &mut u64) -> bool {
        if self.missed_any.load(Ordering::Acquire)
            || self.generation.load(Ordering::Acquire) != *generation
        {
            *generation = self.generation.load(Ordering::Acquire);
            *snapshot = self.snapshot();
            *generation = self.generation.load(Ordering::Acquire);
            return true;
        }
        false
    }

    /// What to parse the next line batch for: the paths wanted so far, with the reads
    /// missed since the last call.
    pub fn snapshot(&self) -> Arc<Wanted> {
        let missed = {
            let mut missed = self.missed.lock().unwrap_or_else(PoisonError::into_inner);
            // Under the lock that `missed` sets it under: a read missed after this is kept
            // for the next snapshot, and flagged again.
            self.missed_any.store(false, Ordering::Release);
            std::mem::take(&mut *missed)
        };
        if !missed.is_empty() {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            let mut learned = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
            let mut wanted = Wanted::clone(&current);
            let mut changed = false;
            for path in &missed {
                if wanted.add(path) {
                    changed = true;
                    *learned += 1;
                }
            }
            if *learned > MAX_LEARNED {
                wanted = Wanted::everything();
            }
            if changed {
                *current = Arc::new(wanted);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::LineBatch;

    fn batch(lines: &[&str]) -> Arc<LineBatch> {
        let mut batch = LineBatch::with_capacity(0, 0);
        for (i, line) in lines.iter().enumerate() {
            batch.push_line(i as u64 + 1, line.as_bytes());
        }
        Arc::new(batch)
    }

    fn wanted(paths: &[&[&str]]) -> Wanted {
        let mut w = Wanted::nothing();
        for p in paths {
            w.add(p);
        }
        w
    }

    /// One set of resolutions serves events parsed for different trees, older and newer,
    /// in any order: each read gives what the unresolved one gives.
    #[test]
    fn resolved_reads_follow_the_tree_each_event_was_parsed_for() {
        let lines = batch(&[
            r#"{"a": 1, "b": {"c": "x", "d": [1]}, "B": {"c": "shadowed"}, "z": null}"#,
            r#"{"A": 2, "b": {"C": "y"}}"#,
        ]);
        let reads: [&[&str]; 5] = [&["a"], &["b", "c"], &["B", "c"], &["z"], &["b"]];
        let trees = [
            wanted(&[&["a"]]),
            wanted(&[&["a"], &["b", "c"], &["z"]]),
            wanted(&[&["b"], &["z"]]),
        ];
        let mut events = Vec::new();
        for tree in trees {
            let paths = Arc::new(WantedPaths::new(tree));
            let from = Arc::new(LineParse::new(lines.clone(), paths.snapshot(), paths));
            for line in &lines.lines {
                events.push(Event::parse(&from, line).unwrap().unwrap());
            }
        }
        let mut resolutions = Resolutions::default();
        for round in 0..2 {
            for (i, event) in events.iter().enumerate().rev() {
                for (index, path) in reads.iter().enumerate() {
                    assert_eq!(
                        event.find_resolved(path, index, &mut resolutions),
                        event.find(path),
                        "round {round}, event {i}, {path:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn reads_not_covered_are_answered_whole_and_learned() {
        let lines = batch(&[
            r#" {"a": 1, "b": {"c": "x", "d": [1]}, "B": {"c": "shadowed"}} "#,
            r#"{"a": 2, "b": {"c": "y"}}"#,
        ]);
        let paths = Arc::new(WantedPaths::new(wanted(&[&["a"]])));
        let snapshot = paths.snapshot();
        let from = Arc::new(LineParse::new(
            lines.clone(),
            snapshot.clone(),
            paths.clone(),
        ));
        let first = Event::parse(&from, &lines.lines[0]);
        let first = first.unwrap().unwrap();
        let full: Value = serde_json::from_slice(lines.bytes_of(&lines.lines[0])).unwrap();
        for path in [
            &["a"][..],
            &["b", "c"],
            &["B", "c"],
            &["b", "d"],
            &["b"],
            &["z"],
        ] {
            assert_eq!(
                first.get(path),
                rulehost_event::deep_get(&full, path),
                "{path:?}"
            );
        }
        assert_eq!(first.whole_value(), &full);
        // The next snapshot keeps what was read.
        let next = paths.snapshot();
        assert!(
            !paths.missed_any.load(Ordering::Acquire),
            "the next line does not take a snapshot again"
        );
        assert!(next.covers(&["b", "c"]) && next.covers(&["z"]) && next.covers(&["a"]));
        assert!(
            !snapshot.covers(&["b", "c"]),
            "an old snapshot is left as it was"
        );
        let from = Arc::new(LineParse::new(lines.clone(), next, paths.clone()));
        let second = Event::parse(&from, &lines.lines[1]);
        let second = second.unwrap().unwrap();
        assert_eq!(second.get(&["b", "c"]), Some(&Value::from("y")));
        assert!(paths.missed.lock().unwrap().is_empty(), "covered now");
    }

    #[test]
    fn event_times_read_from_digits_are_those_of_the_value() {
        let times = [
            "1704067200034",
            r#""1704067200034""#,
            "0",
            r#""007""#,
            "9223372036854775807",
            "9223372036854775808",
            r#""9223372036854775808""#,
            "99999999999999999999",
            "-5",
            "1.5",
            r#""2024-01-01 00:00:01.5""#,
            r#""\u0031""#,
            r#""""#,
            "null",
            r#"{"x": 1}"#,
        ];
        let mut texts: Vec<String> = times
            .iter()
            .map(|t| format!(r#"{{"a": 1, "timestamp": {t}}}"#))
            .collect();
        texts.push(r#"{"a": 1}"#.to_owned());
        texts
            .push(r#"{"a": 1, "p_event_time": "2024-01-01T00:00:01Z", "timestamp": 5}"#.to_owned());
        let lines = batch(&texts.iter().map(String::as_str).collect::<Vec<_>>());
        // The clock's first field is wanted too: most events miss it.
        let paths = Arc::new(WantedPaths::new(wanted(&[
            &["timestamp"],
            &["p_event_time"],
        ])));
        let from = Arc::new(LineParse::new(lines.clone(), paths.snapshot(), paths));
        let clock = crate::clock::Clock::default();
        let mut fast = 0;
        for (line, text) in lines.lines.iter().zip(&texts) {
            let event = Event::parse(&from, line).unwrap().unwrap();
            let full: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                clock.event_time_ms(&event),
                clock.event_time_ms(&full),
                "{text}"
            );
            let Parsed::Pruned(pruned) = &event.0 else {
                panic!("{text}")
            };
            let raw = pruned
                .kept
                .raw(pruned.text(), &*pruned.from.wanted, &["timestamp"]);
            fast += usize::from(matches!(raw, Ok(Raw::Text(t)) if plain_i64(t).is_some()));
        }
        assert_eq!(
            fast, 6,
            "plain digits that fit an i64 are read without a value"
        );
    }

    #[test]
    fn bad_lines_are_refused_as_a_full_parse_refuses_them() {
        let lines = batch(&[
            "[1]",
            r#"{"a": 1"#,
            "3",
            r#"{"a": "\ud800"}"#,
            "  ",
            "\u{feff}{}",
            r#"{"z": 1e999}"#,
        ]);
        let paths = Arc::new(WantedPaths::new(wanted(&[&["z"]])));
        let snapshot = paths.snapshot();
        let from = Arc::new(LineParse::new(lines.clone(), snapshot, paths));
        for line in &lines.lines {
            let pruned = Event::parse(&from, line).map(|e| e.is_some());
            let full = match crate::input::parse_line(lines.bytes_of(line)) {
                crate::input::Line::Bad(bad) => Err(bad),
                crate::input::Line::Blank => Ok(false),
                crate::input::Line::Event(_) => Ok(true),
            };
            assert_eq!(
                pruned.map_err(|e| e.to_string()),
                full.map_err(|e| e.to_string())
            );
        }
    }

    #[test]
    fn too_many_learned_paths_keep_everything() {
        let paths = WantedPaths::new(Wanted::nothing());
        for i in 0..=MAX_LEARNED {
            paths.missed(&[format!("k{i}")]);
            paths.snapshot();
        }
        assert!(paths.snapshot().is_everything());
    }
}
