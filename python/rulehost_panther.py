"""Panther's event API, as rules and Panther's global helpers use it, over the host's
`event` resource.

`PantherEvent` reads each top-level key (and each `deep_get` path) from the host once per
call, through `event.get(path)`: the host parsed the event once and never hands the whole
of it over unless a rule asks for all of it (iteration, `len`, `to_dict`). Nested objects
and arrays come back as `ImmutableCaseInsensitiveDict` and `ImmutableList`, like
panther-core's: reading is case-insensitive after an exact match (the first matching key
in document order wins), and nothing can be assigned.

Written for rulehost from Panther's documented behaviour
(../shared/reference/panther-semantics.md, "Event wrapper"); no panther-core code.
"""

import json
import struct
from collections.abc import Mapping, Sequence

from wit_world.imports import types

# A value the host says is missing (`none`), as opposed to JSON `null` (Python's None).
_MISSING = object()
# Not read yet from the host in this call.
_UNREAD = object()


class ImmutableList(tuple):
    """A JSON array of an event: a tuple, so it cannot be changed. Like panther-core's, it
    equals a list or tuple of equal items (`event.get("tags") == ["a"]`) and is not
    hashable (`value in SOME_SET` raises `TypeError`, as in Panther)."""

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, (tuple, list)):
            return len(self) == len(other) and tuple.__eq__(self, tuple(other))
        return False

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    def copy(self):
        """A mutable deep copy, as a list."""
        return [_thaw(v) for v in self]

    def to_list(self):
        """A mutable deep copy, as a list."""
        return self.copy()


def _fold(key):
    return key.casefold() if isinstance(key, str) else key


class ImmutableCaseInsensitiveDict(Mapping):
    """A JSON object of an event: a read-only mapping whose string keys are found exactly,
    then case-insensitively (the first matching key in document order wins)."""

    __slots__ = ("_data", "_folded")

    def __init__(self, pairs=()):
        data = dict(pairs)
        self._data = data
        self._folded = None

    def _find(self, key):
        data = self._data
        if key in data:
            return data[key]
        if not isinstance(key, str):
            return _MISSING
        folded = self._folded
        if folded is None:
            folded = {}
            for k in data:
                folded.setdefault(_fold(k), k)
            self._folded = folded
        real = folded.get(_fold(key), _MISSING)
        return _MISSING if real is _MISSING else data[real]

    def __getitem__(self, key):
        value = self._find(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key, default=None):
        value = self._find(key)
        return default if value is _MISSING else value

    def __contains__(self, key):
        return self._find(key) is not _MISSING

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return repr(self._data)

    def deep_get(self, *keys, default=None):
        """Walks nested objects; a missing key, a non-object on the way or a final None
        gives `default`."""
        return _deep_get(self, keys, default)

    def deep_walk(self, *keys, default=None, return_val="all"):
        """Walks nested objects and arrays, collecting the values found (see
        `PantherEvent.deep_walk`)."""
        return _deep_walk(self, keys, default, return_val)

    def copy(self):
        """A mutable deep copy, as a dict."""
        return {k: _thaw(v) for k, v in self._data.items()}

    def to_dict(self):
        """A mutable deep copy, as a dict."""
        return self.copy()


def _thaw(value):
    if isinstance(value, ImmutableCaseInsensitiveDict):
        return value.copy()
    if isinstance(value, ImmutableList):
        return value.copy()
    return value


def _freeze(value):
    if type(value) is list:
        return ImmutableList(_freeze(v) for v in value)
    return value


def _object(pairs):
    return ImmutableCaseInsensitiveDict((k, _freeze(v)) for k, v in pairs)


def _from_json(text):
    return _freeze(json.loads(text, object_pairs_hook=_object))


_CONVERT = {
    types.Value_Null: lambda v: None,
    types.Value_Boolean: lambda v: v.value,
    types.Value_Integer: lambda v: v.value,
    types.Value_Float: lambda v: v.value,
    types.Value_Text: lambda v: v.value,
    types.Value_Json: lambda v: _from_json(v.value),
}


_TEXT = types.Value_Text


def to_python(value):
    """A host `value` as Python: `None` (the `none` case) becomes `_MISSING`."""
    if value is None:
        return _MISSING
    kind = type(value)
    if kind is _TEXT:
        return value.value
    return _CONVERT[kind](value)


def _deep_get(obj, keys, default):
    for key in keys:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(key, _MISSING)
        if obj is _MISSING:
            return default
    return default if obj is None else obj


def _walk(obj, keys, out):
    if obj is None or obj is _MISSING:
        return
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        for item in obj:
            _walk(item, keys, out)
        return
    if not keys:
        if obj not in out:
            out.append(obj)
        return
    if isinstance(obj, Mapping):
        _walk(obj.get(keys[0], _MISSING), keys[1:], out)


def _deep_walk(obj, keys, default, return_val):
    found = []
    _walk(obj, tuple(keys), found)
    if not found:
        return default
    if return_val == "first":
        return found[0]
    if return_val == "last":
        return found[-1]
    return found[0] if len(found) == 1 else found


class OneEvent:
    """Reads the event of a one-event call: the host's `event.get(path)`."""

    __slots__ = ("_get",)

    def __init__(self, handle):
        self._get = handle.get

    def read(self, path):
        """The value at `path` (a tuple of keys), `_MISSING` when there is none."""
        return to_python(self._get(list(path)))


# Ids of the paths registered with the host's `field` in this instance (`None`: the host
# registers no more); they live as long as the instance.
_FIELD_IDS = {}


def _field_id(path):
    field = _FIELD_IDS.get(path, _UNREAD)
    if field is _UNREAD:
        field = types.field(list(path))
        _FIELD_IDS[path] = field
    return field


class _Json(str):
    """Packed JSON text of an object or array, parsed when first read."""

    __slots__ = ()


_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<IB")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


def unpack_fields(fields):
    """`evaluate-batch`'s packed `fields` (wit/rulehost.wit): for each event, a dict of
    field id to value, each what `get-field` gives now."""
    events = []
    end_all = len(fields)
    at = 0
    while at + 4 <= end_all:
        (length,) = _U32.unpack_from(fields, at)
        at += 4
        end = at + length
        entries = {}
        while at < end:
            field, tag = _ENTRY.unpack_from(fields, at)
            at += 5
            if tag == 0:
                value = _MISSING
            elif tag == 1:
                value = None
            elif tag == 2 or tag == 3:
                value = tag == 3
            elif tag == 4:
                (value,) = _I64.unpack_from(fields, at)
                at += 8
            elif tag == 5:
                (value,) = _F64.unpack_from(fields, at)
                at += 8
            elif tag == 6 or tag == 7:
                (size,) = _U32.unpack_from(fields, at)
                at += 4
                value = fields[at : at + size].decode()
                at += size
                if tag == 7:
                    value = _Json(value)
            else:
                break
            entries[field] = value
        at = end
        events.append(entries)
    return events


class BatchEvent:
    """Reads event `index` of an `evaluate-batch` call: paths through registered fields,
    from the values the host packed (`fields`) when it packed them, else with
    `events.get-field` (which makes the host pack them in the next calls)."""

    __slots__ = ("_events", "_index", "_packed")

    def __init__(self, events, index, packed):
        self._events = events
        self._index = index
        self._packed = packed

    def read(self, path):
        """The value at `path` (a tuple of keys), `_MISSING` when there is none."""
        # The whole event is not worth packing into every later call.
        field = _field_id(path) if path else None
        if field is None:
            return to_python(self._events.get(self._index, list(path)))
        packed = self._packed
        if packed is not None:
            value = packed.get(field, _UNREAD)
            if value is not _UNREAD:
                return _from_json(value) if type(value) is _Json else value
        return to_python(self._events.get_field(self._index, field))


class PantherEvent(ImmutableCaseInsensitiveDict):
    """The `event` a rule's functions get: Panther's `PantherEvent`, reading through the
    host with `reader` (`OneEvent` or `BatchEvent`)."""

    __slots__ = ("_reader", "_cache", "_whole")

    def __init__(self, reader):
        # `_data` stays empty until a rule needs every key (iteration, len, copies). Set
        # here rather than through `super().__init__`: one event per call, on the hot path.
        self._data = {}
        self._folded = None
        self._reader = reader
        self._cache = {}
        self._whole = False

    def _load_whole(self):
        if not self._whole:
            whole = self._reader.read(())
            self._data = whole._data if isinstance(whole, ImmutableCaseInsensitiveDict) else {}
            self._folded = None
            self._whole = True
        return self._data

    def _find(self, key):
        if self._whole:
            return ImmutableCaseInsensitiveDict._find(self, key)
        if not isinstance(key, str):
            return _MISSING
        cache = self._cache
        if key in cache:
            return cache[key]
        value = self._reader.read((key,))
        cache[key] = value
        return value

    def __iter__(self):
        return iter(self._load_whole())

    def __len__(self):
        return len(self._load_whole())

    def __repr__(self):
        return repr(self._load_whole())

    def copy(self):
        self._load_whole()
        return ImmutableCaseInsensitiveDict.copy(self)

    def to_dict(self):
        return self.copy()

    def deep_get(self, *keys, default=None):
        """Panther's `event.deep_get(*keys, default=None)`: one host read for the path;
        a missing key, a non-object on the way or a final None gives `default`."""
        if not keys:
            return default
        if not all(isinstance(k, str) for k in keys):
            return _deep_get(self, keys, default)
        if len(keys) == 1:
            value = self._find(keys[0])
        else:
            cache = self._cache
            value = cache.get(keys, _UNREAD)
            if value is _UNREAD:
                value = self._reader.read(keys)
                cache[keys] = value
        return default if value is _MISSING or value is None else value

    def deep_walk(self, *keys, default=None, return_val="all"):
        """Panther's `event.deep_walk`: walks objects and descends through arrays,
        collecting the values at the end of `keys` (duplicates dropped, in order);
        `return_val` `"all"` gives the one value alone or a list, `"first"` or `"last"`
        one of them; none found gives `default`."""
        return _deep_walk(self, keys, default, return_val)

    def udm(self, *keys, default=None):
        """Data models are not supported yet: a clear rule error."""
        raise NotImplementedError(
            "event.udm: Panther data models are not supported by rulehost yet"
        )

    def udm_path(self, key):
        """Data models are not supported yet: a clear rule error."""
        raise NotImplementedError(
            "event.udm_path: Panther data models are not supported by rulehost yet"
        )

    def lookup(self, lookup_table_name, lookup_key):
        """Lookup tables are not supported: a clear rule error."""
        raise NotImplementedError(
            "event.lookup: Panther lookup tables are not supported by rulehost"
        )

    def event_time_epoch(self):
        """`p_event_time` in seconds since the epoch (UTC); 0 when it cannot be read."""
        from datetime import datetime, timezone

        value = self.get("p_event_time")
        if not isinstance(value, str):
            return 0
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return 0
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp())


def json_default(value):
    """`json.dumps`'s `default`: the event's immutable objects as plain JSON."""
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
