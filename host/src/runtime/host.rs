//! [`HostState`]: what a rule instance's Store holds, and the host side of the `types`
//! interface: the `event` resource a rule reads, and `field` registration.

use std::sync::Arc;

use rulehost_event::Found;
use serde_json::Value as Json;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{WitValue, modules, types};
use super::{limits, python, wasi};
use crate::event::{Event, Resolutions};

/// Everything a rule's Store holds.
pub(super) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: limits::StoreLimiter,
    /// The events of the call in progress, empty between calls. The guest's `event` and
    /// `events` handles stand for ([`handle_rep`]) the call's number and an index here, so
    /// a handle kept from an earlier call reads nothing.
    pub events: Vec<Arc<Event>>,
    /// The number of the call in progress (wrapping at 24 bits).
    pub call: u32,
    /// The event time and call count the virtual clocks and random generators read.
    pub virt: wasi::Virtual,
    /// Paths registered with `field`, indexed by id; they live as long as the instance.
    pub fields: Vec<Vec<String>>,
    /// Bytes of path keys in `fields`, against [`MAX_FIELD_BYTES`].
    pub field_bytes: usize,
    /// Ids of the fields `evaluate-batch` calls of this instance read with `get-field`,
    /// in the order first read: each such call gets their values up front ([`pack`]).
    pub prefetch: Vec<u32>,
    /// Whether the call in progress is `evaluate-batch` (whose reads join `prefetch`).
    pub in_batch: bool,
    /// The helper modules `modules.find` serves (a language runtime's rules); empty for
    /// a rule component, which cannot import `modules`.
    pub modules: Arc<python::Modules>,
}

/// The representation of the handle of event `index` (below 256) in call `call` (24
/// bits). A one-event call lends event 0; a batch lends one `events` handle, whose index
/// is 0 and whose reads name the event.
pub(super) fn handle_rep(call: u32, index: usize) -> u32 {
    (call << 8) | (index as u32 & 0xff)
}

/// Paths one instance may register with `field`. A rule reads a few dozen fields; the cap
/// bounds what a hostile guest makes the host keep (and the linear search of `field`,
/// which runs once per path and instance, not per event). Past it `field` gives `none` and
/// the SDK reads with `get`.
pub(super) const MAX_FIELDS: usize = 256;
/// Bytes of path keys one instance may register, for the same reason: 256 paths of 256
/// bytes.
pub(super) const MAX_FIELD_BYTES: usize = 64 << 10;
/// Fields packed per event into each `evaluate-batch` call at most. A rule that reads
/// some fields only on rare branches gets them on every call once read; the cap bounds
/// that waste.
pub(super) const MAX_PREFETCH: usize = 16;

impl HostState {
    pub fn new(virt: wasi::Virtual, wasi: WasiCtx, limits: limits::StoreLimiter) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            events: Vec::new(),
            call: 0,
            virt,
            fields: Vec::new(),
            field_bytes: 0,
            prefetch: Vec::new(),
            in_batch: false,
            modules: Arc::default(),
        }
    }

    /// The index in `events` of the event `handle` stands for, if it is of this call.
    fn index(&self, handle: &Resource<types::Event>) -> Option<usize> {
        let rep = handle.rep();
        (rep >> 8 == self.call).then_some((rep & 0xff) as usize)
    }

    /// Event `index` of the `events` handle of the call in progress.
    fn index_in(&self, handle: &Resource<types::Events>, index: u32) -> Option<usize> {
        (handle.rep() >> 8 == self.call).then_some(usize::try_from(index).ok()?)
    }

    fn read(&self, index: usize, path: &[String]) -> Option<WitValue> {
        self.events.get(index)?.find(path).map(found_to_wit)
    }

    /// `get-field`: the value of registered field `id` of event `index`; in a batch call
    /// the field joins the prefetch list.
    fn read_field(&mut self, index: usize, id: u32) -> Option<WitValue> {
        let path = self.fields.get(usize::try_from(id).ok()?)?;
        let value = self.events.get(index)?.find(path).map(found_to_wit);
        if self.in_batch && self.prefetch.len() < MAX_PREFETCH && !self.prefetch.contains(&id) {
            self.prefetch.push(id);
        }
        value
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {
    fn field(&mut self, path: Vec<String>) -> Option<u32> {
        if let Some(id) = self.fields.iter().position(|p| *p == path) {
            return u32::try_from(id).ok();
        }
        let bytes: usize = path.iter().map(String::len).sum();
        if self.fields.len() >= MAX_FIELDS || self.field_bytes + bytes > MAX_FIELD_BYTES {
            return None;
        }
        self.field_bytes += bytes;
        self.fields.push(path);
        u32::try_from(self.fields.len() - 1).ok()
    }
}

impl modules::Host for HostState {
    fn find(&mut self, name: String) -> Option<String> {
        self.modules.find(&name).map(str::to_owned)
    }
}

impl types::HostEvent for HostState {
    fn get(&mut self, event: Resource<types::Event>, path: Vec<String>) -> Option<WitValue> {
        self.read(self.index(&event)?, &path)
    }

    fn get_field(&mut self, event: Resource<types::Event>, id: u32) -> Option<WitValue> {
        self.read_field(self.index(&event)?, id)
    }

    /// The host only lends events (`borrow<event>`): there is nothing to free.
    fn drop(&mut self, _event: Resource<types::Event>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl types::HostEvents for HostState {
    fn len(&mut self, events: Resource<types::Events>) -> u32 {
        match events.rep() >> 8 == self.call {
            true => self.events.len() as u32,
            false => 0,
        }
    }

    fn get(
        &mut self,
        events: Resource<types::Events>,
        index: u32,
        path: Vec<String>,
    ) -> Option<WitValue> {
        self.read(self.index_in(&events, index)?, &path)
    }

    fn get_field(
        &mut self,
        events: Resource<types::Events>,
        index: u32,
        id: u32,
    ) -> Option<WitValue> {
        self.read_field(self.index_in(&events, index)?, id)
    }

    /// The host only lends the batch (`borrow<events>`): there is nothing to free.
    fn drop(&mut self, _events: Resource<types::Events>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// Appends the values of the fields `ids` (registered `paths`, read through
/// `resolutions`) of `event` to `out`, in the format `evaluate-batch`'s `fields` documents
/// (wit/rulehost.wit): per field its id, a tag and a payload, each value exactly what
/// [`to_wit`] gives `get-field`.
pub(super) fn pack(
    event: &Event,
    paths: &[Vec<String>],
    ids: &[u32],
    resolutions: &mut Resolutions,
    out: &mut Vec<u8>,
) {
    for &id in ids {
        let Some(path) = paths.get(id as usize) else {
            continue;
        };
        let start = out.len();
        out.extend_from_slice(&id.to_le_bytes());
        let text = |out: &mut Vec<u8>, tag: u8, s: &[u8]| match u32::try_from(s.len()) {
            Ok(len) => {
                out.push(tag);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s);
            }
            // Not representable: left out, so the rule reads it with `get-field`.
            Err(_) => out.truncate(start),
        };
        let value = match event.find_resolved(path, id as usize, resolutions) {
            Some(Found::Text(s)) => {
                text(out, 6, s);
                continue;
            }
            Some(Found::Value(value)) => Some(value),
            None => None,
        };
        match value {
            None => out.push(0),
            Some(Json::Null) => out.push(1),
            Some(Json::Bool(b)) => out.push(2 + u8::from(*b)),
            Some(Json::Number(n)) => match n.as_i64() {
                Some(i) => {
                    out.push(4);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                None => {
                    out.push(5);
                    out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
                }
            },
            Some(Json::String(s)) => text(out, 6, s.as_bytes()),
            Some(value) => text(out, 7, value.to_string().as_bytes()),
        }
    }
}

fn found_to_wit(found: Found<'_>) -> WitValue {
    match found {
        Found::Text(s) => WitValue::Text(String::from_utf8_lossy(s).into_owned()),
        Found::Value(value) => to_wit(value),
    }
}

fn to_wit(value: &Json) -> WitValue {
    match value {
        Json::Null => WitValue::Null,
        Json::Bool(b) => WitValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => WitValue::Integer(i),
            None => WitValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => WitValue::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => WitValue::Json(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Limits;
    use types::{Host, HostEvent};

    fn state(event: &str) -> HostState {
        let virt = wasi::Virtual::default();
        let mut state = HostState::new(
            virt.clone(),
            wasi::context(&virt, None),
            Limits::default().limiter(),
        );
        state.events = vec![Arc::new(Event::whole(serde_json::from_str(event).unwrap()))];
        state
    }

    fn first() -> Resource<types::Event> {
        Resource::new_borrow(handle_rep(0, 0))
    }

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn fields_are_registered_once_and_read_like_get() {
        let mut s = state(r#"{"User": {"Email": "a@b.c"}, "n": null}"#);
        let email = s.field(path(&["user", "email"])).unwrap();
        assert_eq!(s.field(path(&["n"])), Some(email + 1));
        assert_eq!(s.field(path(&["user", "email"])), Some(email));
        let by_id = s.get_field(first(), email);
        let by_path = s.get(first(), path(&["user", "email"]));
        assert!(matches!(&by_id, Some(WitValue::Text(t)) if t == "a@b.c"));
        assert_eq!(format!("{by_id:?}"), format!("{by_path:?}"));
        let null = s.get_field(first(), email + 1);
        assert!(matches!(null, Some(WitValue::Null)));
        assert!(s.get_field(first(), 99).is_none());
    }

    #[test]
    fn batch_reads_are_prefetched_once_each_up_to_a_cap() {
        let mut s = state(r#"{"a": 1}"#);
        let ids: Vec<u32> = (0..MAX_PREFETCH + 2)
            .map(|i| s.field(path(&[&i.to_string()])).unwrap())
            .collect();
        s.get_field(first(), ids[0]);
        assert!(
            s.prefetch.is_empty(),
            "reads outside `evaluate-batch` are not prefetched"
        );
        s.in_batch = true;
        for &id in ids.iter().rev().chain(&ids) {
            s.get_field(first(), id);
        }
        let expected: Vec<u32> = ids.iter().rev().take(MAX_PREFETCH).copied().collect();
        assert_eq!(s.prefetch, expected);
    }

    #[test]
    fn pack_writes_each_kind_of_value_as_documented() {
        let event: Json = serde_json::from_str(
            r#"{"s": "h\u00e9", "i": -2, "f": 1.5, "t": true, "n": null, "o": {"k": [1]},
                "b": false, "big": 18446744073709551615}"#,
        )
        .unwrap();
        let paths: Vec<Vec<String>> = ["s", "i", "f", "t", "n", "o", "b", "missing", "big"]
            .iter()
            .map(|k| path(&[k]))
            .collect();
        let mut out = vec![9, 9];
        pack(
            &Event::whole(event),
            &paths,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 42],
            &mut Resolutions::default(),
            &mut out,
        );
        // Appended to what `out` held.
        let mut want = vec![9, 9];
        let mut entry = |id: u32, tag: u8, payload: &[u8]| {
            want.extend_from_slice(&id.to_le_bytes());
            want.push(tag);
            want.extend_from_slice(payload);
        };
        let text = |s: &str| [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat();
        entry(0, 6, &text("hé"));
        entry(1, 4, &(-2i64).to_le_bytes());
        entry(2, 5, &1.5f64.to_le_bytes());
        entry(3, 3, &[]);
        entry(4, 1, &[]);
        entry(5, 7, &text(r#"{"k":[1]}"#));
        entry(6, 2, &[]);
        entry(7, 0, &[]);
        // Past i64: a float, as `get-field` gives it. Id 42 is not registered: left out.
        entry(8, 5, &18446744073709551615f64.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn fields_are_capped() {
        let mut s = state("{}");
        for i in 0..MAX_FIELDS {
            assert!(s.field(path(&[&i.to_string()])).is_some());
        }
        assert_eq!(s.field(path(&["one more"])), None);
        assert_eq!(s.field(path(&["0"])), Some(0), "known paths keep their id");
        let mut s = state("{}");
        let long = "k".repeat(MAX_FIELD_BYTES);
        assert!(s.field(path(&[&long])).is_some());
        assert_eq!(s.field(path(&["k"])), None);
    }
}
