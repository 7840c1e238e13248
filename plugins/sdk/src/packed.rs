//! Reading `evaluate-batch`'s `fields`: the values of registered fields the host packed
//! into one buffer ahead of the call (the format is in wit/rulehost.wit, at
//! `evaluate-batch`).

use crate::Value;

/// The value of field `id` in `packed`: `None` when the buffer has no entry for it (read
/// it from the host), `Some(None)` when the field is missing from the event. A malformed
/// buffer reads as having no entry from the first bad byte on.
pub fn find(mut packed: &[u8], id: u32) -> Option<Option<Value>> {
    loop {
        let (head, rest) = packed.split_first_chunk::<5>()?;
        let [a, b, c, d, tag] = *head;
        let size = match tag {
            0..=3 => 0,
            4 | 5 => 8,
            6 | 7 => 4 + usize::try_from(u32::from_le_bytes(*rest.first_chunk()?)).ok()?,
            _ => return None,
        };
        let payload = rest.get(..size)?;
        if u32::from_le_bytes([a, b, c, d]) == id {
            return decode(tag, payload);
        }
        packed = &rest[size..];
    }
}

/// The `count` sections of `evaluate-batch`'s `fields`, one per event (each prefixed by
/// its length). A malformed buffer gives empty sections from the first bad byte on: those
/// events read every field from the host.
pub fn sections(mut packed: &[u8], count: u32) -> impl Iterator<Item = &[u8]> {
    (0..count).map(move |_| {
        let section = packed.split_first_chunk::<4>().and_then(|(len, rest)| {
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            Some((rest.get(..len)?, &rest[len..]))
        });
        match section {
            Some((section, rest)) => {
                packed = rest;
                section
            }
            None => {
                packed = &[];
                &[]
            }
        }
    })
}

fn decode(tag: u8, payload: &[u8]) -> Option<Option<Value>> {
    Some(match tag {
        0 => None,
        1 => Some(Value::Null),
        2 | 3 => Some(Value::Bool(tag == 3)),
        4 => Some(Value::Int(i64::from_le_bytes(*payload.first_chunk()?))),
        5 => Some(Value::Float(f64::from_le_bytes(*payload.first_chunk()?))),
        _ => {
            let text = text(payload.get(4..)?)?;
            Some(if tag == 6 {
                Value::Str(text)
            } else {
                Value::Json(text)
            })
        }
    })
}

/// The host writes text entries from Rust strings, so they are UTF-8. Like the string
/// lifting wit-bindgen generates for every host call, release builds take that on trust
/// and skip the check (the most expensive step of a read, in a rule's profile); debug
/// builds check.
#[allow(
    unsafe_code,
    reason = "the host guarantees UTF-8, as for wit-bindgen's strings"
)]
fn text(bytes: &[u8]) -> Option<String> {
    if cfg!(debug_assertions) {
        return std::str::from_utf8(bytes).ok().map(str::to_owned);
    }
    // SAFETY: the host encodes text entries from `&str` (host/src/runtime/mod.rs, `pack`).
    Some(unsafe { String::from_utf8_unchecked(bytes.to_vec()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, id: u32, tag: u8, payload: &[u8]) {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(tag);
        out.extend_from_slice(payload);
    }

    fn text(s: &str) -> Vec<u8> {
        [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat()
    }

    #[test]
    fn finds_each_kind_of_value_by_id() {
        let mut buf = Vec::new();
        entry(&mut buf, 7, 6, &text("hé"));
        entry(&mut buf, 1, 4, &(-2i64).to_le_bytes());
        entry(&mut buf, 2, 5, &1.5f64.to_le_bytes());
        entry(&mut buf, 3, 3, &[]);
        entry(&mut buf, 4, 1, &[]);
        entry(&mut buf, 5, 7, &text(r#"{"k":[1]}"#));
        entry(&mut buf, 6, 2, &[]);
        entry(&mut buf, 0, 0, &[]);
        assert_eq!(find(&buf, 7), Some(Some(Value::Str("hé".into()))));
        assert_eq!(find(&buf, 1), Some(Some(Value::Int(-2))));
        assert_eq!(find(&buf, 2), Some(Some(Value::Float(1.5))));
        assert_eq!(find(&buf, 3), Some(Some(Value::Bool(true))));
        assert_eq!(find(&buf, 4), Some(Some(Value::Null)));
        assert_eq!(
            find(&buf, 5),
            Some(Some(Value::Json(r#"{"k":[1]}"#.into())))
        );
        assert_eq!(find(&buf, 6), Some(Some(Value::Bool(false))));
        assert_eq!(
            find(&buf, 0),
            Some(None),
            "present in the buffer, missing in the event"
        );
        assert_eq!(find(&buf, 8), None, "not in the buffer");
        assert_eq!(find(&[], 0), None);
    }

    #[test]
    fn sections_split_a_batch_and_survive_damage() {
        let mut one = Vec::new();
        entry(&mut one, 3, 4, &7i64.to_le_bytes());
        let mut buf = Vec::new();
        for section in [&one[..], &[], &one[..]] {
            buf.extend_from_slice(&(section.len() as u32).to_le_bytes());
            buf.extend_from_slice(section);
        }
        let got: Vec<&[u8]> = sections(&buf, 3).collect();
        assert_eq!(got, [&one[..], &[], &one[..]]);
        // Asking for more sections than there are, or a cut buffer: empty ones.
        let got: Vec<&[u8]> = sections(&buf, 4).collect();
        assert_eq!(got.len(), 4);
        assert!(got[3].is_empty());
        let got: Vec<&[u8]> = sections(&buf[..buf.len() - 1], 3).collect();
        assert_eq!(got, [&one[..], &[], &[]]);
    }

    #[test]
    fn a_malformed_buffer_reads_as_no_entry() {
        let mut buf = Vec::new();
        entry(&mut buf, 1, 4, &5i64.to_le_bytes());
        let good = buf.len();
        entry(&mut buf, 2, 6, &text("abc"));
        // Cut inside the string, an unknown tag, a length past the end.
        assert_eq!(find(&buf[..buf.len() - 1], 2), None);
        assert_eq!(find(&buf[..good + 3], 2), None);
        let mut unknown = buf[..good].to_vec();
        entry(&mut unknown, 2, 9, &[]);
        assert_eq!(find(&unknown, 2), None);
        let mut long = buf[..good].to_vec();
        entry(&mut long, 2, 6, &u32::MAX.to_le_bytes());
        assert_eq!(find(&long, 2), None);
        // Entries before the damage still read.
        assert_eq!(find(&unknown, 1), Some(Some(Value::Int(5))));
    }
}
