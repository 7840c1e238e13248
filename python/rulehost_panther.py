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


# --- reading through the host ------------------------------------------------------


class _Json(str):
    """Packed JSON text of an object or array, parsed when first read."""

    __slots__ = ()


# Ids of the paths registered with the host's `field` in this instance (`None`: the host
# registers no more), and for each id the key its value has in an event's cache (the key
# for a one-key path, else the path); they live as long as the instance.
_FIELD_IDS = {}
_CACHE_KEYS = {}

# `evaluate-batch`: a path is read with `get-field` (after which the host packs its value
# into every later call, for every event) only once it is read often enough for that to
# pay: `_PROMOTE_READS` times, in at least one in `_PROMOTE_SHARE` of the events since its
# first read. Until then, and for a path read only on rare branches (a `title` of a rule
# that seldom matches), it is read with `get`, which packs nothing.
_PROMOTE_READS = 8
_PROMOTE_SHARE = 8


class _BatchReads:
    """How often `evaluate-batch` calls of this instance read each path not packed yet."""

    # Events given to earlier `evaluate-batch` calls of this instance.
    seen = 0
    # Path -> [reads, number of the event of the first read].
    reads = {}


def _field_id(path):
    field = _FIELD_IDS.get(path, _UNREAD)
    if field is _UNREAD:
        field = types.field(list(path))
        _FIELD_IDS[path] = field
        if field is not None:
            _CACHE_KEYS[field] = path[0] if len(path) == 1 else path
    return field


def _frequent(path, index):
    """Counts a read of `path` (not packed) in event `index` of this call; whether it is
    read often enough to register and have packed."""
    number = _BatchReads.seen + index
    counts = _BatchReads.reads.get(path)
    if counts is None:
        counts = _BatchReads.reads[path] = [0, number]
    counts[0] += 1
    return counts[0] >= _PROMOTE_READS and counts[0] * _PROMOTE_SHARE > number - counts[1]


def _batch_read(events, index, path):
    """The value at `path` of event `index` of an `evaluate-batch` call, not packed: with
    `get-field` for a registered path, else with `get` (the whole event, `()`, is not worth
    packing into every call)."""
    field = _FIELD_IDS.get(path)
    if field is None and path and path not in _FIELD_IDS and _frequent(path, index):
        field = _field_id(path)
    if field is None:
        return to_python(events.get(index, list(path)))
    return to_python(events.get_field(index, field))


def batch_done(count):
    """An `evaluate-batch` call of `count` events ended."""
    _BatchReads.seen += count


_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
# An event's section length with its first entry's id, tag and (for text and JSON) size;
# a later entry's id, tag and size. Each is read in one call (`fields` is padded, so that
# a read past a short last entry stays in bounds): in the Python runtime every call and
# every integer past 256 costs.
_HEAD = struct.Struct("<IIBI")
_ENTRY = struct.Struct("<IBI")
_PAD = bytes(_HEAD.size)


def unpack_fields(fields):
    """`evaluate-batch`'s packed `fields` (wit/rulehost.wit): for each event, a dict of
    the packed values by cache key (`_CACHE_KEYS`), each what `get-field` gives now
    (objects and arrays as `_Json`, parsed when read): the event's cache to start with."""
    events = []
    append = events.append
    keys = _CACHE_KEYS
    head = _HEAD.unpack_from
    entry = _ENTRY.unpack_from
    last = len(fields) - 4
    fields += _PAD
    at = 0
    while at <= last:
        length, field, tag, size = head(fields, at)
        end = at + 4 + length
        values = {}
        if length:
            at += 9
            while True:
                if tag == 6 or tag == 7:
                    at += 4
                    stop = at + size
                    value = fields[at:stop].decode()
                    at = stop
                    if tag == 7:
                        value = _Json(value)
                elif tag < 2:
                    value = _MISSING if tag == 0 else None
                elif tag < 4:
                    value = tag == 3
                elif tag == 4:
                    (value,) = _I64.unpack_from(fields, at)
                    at += 8
                elif tag == 5:
                    (value,) = _F64.unpack_from(fields, at)
                    at += 8
                else:
                    # Not a tag of this contract: the rest of the section is not read.
                    break
                key = keys.get(field)
                if key is not None:
                    values[key] = value
                if at >= end:
                    break
                field, tag, size = entry(fields, at)
                at += 5
        append(values)
        at = end
    return events


class PantherEvent(ImmutableCaseInsensitiveDict):
    """The `event` a rule's functions get: Panther's `PantherEvent`, reading through the
    host: a one-event call's `event` handle (`_index` -1) or event `_index` of an
    `evaluate-batch` call's `events`. Made by `one_event` and `batch_event`."""

    # `_cache`: what was read, by key (a `get`) or path (a `deep_get`); `_data` (of
    # `ImmutableCaseInsensitiveDict`) stays None until a rule needs every key (iteration,
    # `len`, copies), after which keys are looked up in it.
    __slots__ = ("_source", "_index", "_cache")

    def _read(self, path):
        """The value at `path` (a tuple of keys) from the host, `_MISSING` when none."""
        index = self._index
        if index < 0:
            return to_python(self._source.get(list(path)))
        return _batch_read(self._source, index, path)

    def _load_whole(self):
        data = self._data
        if data is None:
            whole = self._read(())
            data = whole._data if isinstance(whole, ImmutableCaseInsensitiveDict) else {}
            # Keys are found in `data` from now on; `deep_get` paths stay cached.
            self._cache = {k: v for k, v in self._cache.items() if type(k) is tuple}
            self._folded = None
            self._data = data
        return data

    def _find(self, key):
        if self._data is not None:
            return ImmutableCaseInsensitiveDict._find(self, key)
        if not isinstance(key, str):
            return _MISSING
        cache = self._cache
        value = cache.get(key, _UNREAD)
        if value is _UNREAD:
            value = self._read((key,))
        elif type(value) is _Json:
            value = _from_json(value)
        else:
            return value
        cache[key] = value
        return value

    def get(self, key, default=None):
        # The common case first: a key read (or packed) before.
        if type(key) is str:
            value = self._cache.get(key, _UNREAD)
            if value is _UNREAD or type(value) is _Json:
                value = self._find(key)
        else:
            value = self._find(key)
        return default if value is _MISSING else value

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
        # The common case first: a path read (or packed) before; only paths of strings
        # are cached.
        try:
            value = self._cache.get(keys, _UNREAD)
        except TypeError:  # an unhashable key
            value = _UNREAD
        if value is _UNREAD or type(value) is _Json:
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
                    value = self._read(keys)
                elif type(value) is _Json:
                    value = _from_json(value)
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


_new = object.__new__


def one_event(handle):
    """The `PantherEvent` of a one-event call's `event` handle."""
    event = _new(PantherEvent)
    event._source = handle
    event._index = -1
    event._cache = {}
    event._data = None
    return event


def batch_event(events, index, cache):
    """The `PantherEvent` of event `index` of an `evaluate-batch` call, whose cache starts
    as `cache` (its packed fields, `unpack_fields`)."""
    event = _new(PantherEvent)
    event._source = events
    event._index = index
    event._cache = cache
    event._data = None
    return event


def json_default(value):
    """`json.dumps`'s `default`: the event's immutable objects as plain JSON."""
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
