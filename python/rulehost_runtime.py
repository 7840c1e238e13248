"""rulehost's Python rule runtime: the `rule-runtime` world of `wit/rulehost.wit`, built
into one component by componentize-py (`make python-runtime`).

The host makes one instance per Python rule and calls `RuleSource.load` on it once,
before anything else: the rule's module source, and Panther's `Mocks:` for a test. The
rule's `import`s of helper modules are answered by the host (`modules.find`, Panther's
`global_helpers/`). Then `Detection` calls Panther's functions of that module with a
`PantherEvent` that reads the host's `event`, and `Batch` does the same for several
events in one call.

What each function returns follows panther-core (../shared/reference/panther-semantics.md):
`rule` must return a bool; the string functions a str (None is handed to the host, which
applies Panther's fallback); `alert_context` a mapping, serialised as JSON; an exception
is `err("ExceptionType: message")`.

Only modules imported here, at build time, exist at run time (the component has no
files): the standard library modules rules and helpers use are imported below.
"""

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import types as pytypes
import warnings

from componentize_py_types import Err, Ok

import wit_world
from wit_world import exports
from wit_world.exports import batch as batch_types
from wit_world.imports import modules

import rulehost_panther
from rulehost_panther import PantherEvent

# The standard library (and python-dateutil, which Panther's helpers import) as rules use
# it: importable at run time because they are imported now, at build time.
# fmt: off
import base64, binascii, bisect, calendar, collections, collections.abc, contextlib  # noqa: E401,F401
import copy, csv, dataclasses, datetime, decimal, difflib, enum, fnmatch, functools  # noqa: E401,F401
import hashlib, heapq, hmac, html, io, ipaddress, itertools, logging, math, operator  # noqa: E401,F401
import random, re, secrets, shlex, socket, statistics, string, struct, textwrap  # noqa: E401,F401
import time, typing, unicodedata, urllib.parse, uuid, zlib, _strptime  # noqa: E401,F401
import os, os.path, posixpath, encodings.idna  # noqa: E401,F401
import unittest, unittest.mock  # noqa: E401,F401
import dateutil, dateutil.parser, dateutil.tz, dateutil.relativedelta  # noqa: E401,F401
# fmt: on

_NETWORK_HINT = (
    "it needs the network (Panther's key-value store, AWS APIs), which rulehost's Python "
    "rules do not have"
)


class NetworkUnavailable(RuntimeError):
    """Raised by the stand-ins of modules that only work with the network."""


def _network_module(name):
    """A stand-in for a module that needs the network: importing it works (helpers import
    it at the top), using anything from it raises `NetworkUnavailable`."""
    module = pytypes.ModuleType(name)
    module.__path__ = []  # a package: `panther_detection_helpers.caching` imports

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def refused(*args, **kwargs):
            raise NetworkUnavailable(f"`{name}.{attr}` cannot be used: {_NETWORK_HINT}")

        return refused

    module.__getattr__ = __getattr__
    return module


# Modules served by the runtime itself, before the host's helpers.
_NETWORK_MODULES = ("boto3", "botocore", "panther_detection_helpers", "requests")


def _panther_core_modules():
    """`panther_core`'s event types, for helpers that import them (type hints)."""
    core = pytypes.ModuleType("panther_core")
    core.__path__ = []
    core.PantherEvent = PantherEvent
    immutable = pytypes.ModuleType("panther_core.immutable")
    immutable.ImmutableCaseInsensitiveDict = rulehost_panther.ImmutableCaseInsensitiveDict
    immutable.ImmutableList = rulehost_panther.ImmutableList
    enriched = pytypes.ModuleType("panther_core.enriched_event")
    enriched.PantherEvent = PantherEvent
    core.immutable = immutable
    core.enriched_event = enriched
    return {m.__name__: m for m in (core, immutable, enriched)}


class _HostModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds modules the rule imports: the network stand-ins, then the host's helpers
    (`modules.find`). The file-based finder is removed: there are no files."""

    def __init__(self):
        self._sources = {}

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".", 1)[0]
        if top in _NETWORK_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        if "." in fullname:
            return None
        source = modules.find(fullname)
        if source is None:
            return None
        self._sources[fullname] = source
        return importlib.util.spec_from_loader(fullname, self, origin=f"{fullname}.py")

    def create_module(self, spec):
        if spec.name.split(".", 1)[0] in _NETWORK_MODULES:
            return _network_module(spec.name)
        return None

    def exec_module(self, module):
        name = module.__name__
        source = self._sources.pop(name, None)
        if source is None:
            return
        module.__file__ = f"{name}.py"
        exec(compile(source, module.__file__, "exec"), module.__dict__)


def _install_finder():
    sys.meta_path[:] = [
        f for f in sys.meta_path if f is not importlib.machinery.PathFinder
    ]
    sys.meta_path.append(_HostModules())
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.modules.update(_panther_core_modules())
    # A warning would be written with its source line, read from a file: none exist.
    warnings.simplefilter("ignore")
    sys.dont_write_bytecode = True


# --- the rule -----------------------------------------------------------------------

# The rule's module, once `load` ran.
_module = None
# Panther's functions the module defines, by WIT name.
_functions = {}

_STRING_FUNCTIONS = (
    "title",
    "dedup",
    "unique",
    "severity",
    "description",
    "reference",
    "runbook",
)
_PYTHON_NAMES = {name: name for name in _STRING_FUNCTIONS}
_PYTHON_NAMES.update(rule="rule", alert_context="alert_context", destinations="destinations")


def _message(error):
    """Panther's `ExceptionType: message`."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def _type_error(function, value, expected):
    name = _module.__name__ if _module is not None else "rule"
    return (
        f"FunctionReturnTypeError: detection [{name}] function [{function}] returned "
        f"[{type(value).__name__}], expected [{expected}]"
    )


class _Mock:
    """What Panther's `Mocks:` put in place of a name: calling it returns the value."""

    def __init__(self, value):
        self.return_value = value

    def __call__(self, *args, **kwargs):
        return self.return_value


def _load(main, mocks):
    global _module, _functions
    module = pytypes.ModuleType(main.name)
    module.__file__ = f"{main.name}.py"
    sys.modules[main.name] = module
    exec(compile(main.source, module.__file__, "exec"), module.__dict__)
    for mock in mocks:
        if not hasattr(module, mock.name):
            raise AttributeError(
                f"Mocks: the rule module `{main.name}` has no attribute `{mock.name}` to patch"
            )
        setattr(module, mock.name, _Mock(json.loads(mock.value)))
    functions = {}
    for wit_name, py_name in _PYTHON_NAMES.items():
        function = getattr(module, py_name, None)
        if callable(function):
            functions[wit_name] = function
    if "rule" not in functions:
        raise AttributeError(
            f"detection `{main.name}` needs to have a function named 'rule'"
        )
    _module, _functions = module, functions


def _rule(event):
    """`rule` on `event`: a bool, or raises `Err`."""
    try:
        matched = _functions["rule"](event)
    except Exception as error:  # noqa: BLE001 - every exception is a rule error
        raise Err(_message(error))
    if not isinstance(matched, bool):
        raise Err(_type_error("rule", matched, "bool"))
    return matched


def _string(name, event):
    """An optional function returning a string: `None` when not defined."""
    function = _functions.get(name)
    if function is None:
        return None
    try:
        value = function(event)
    except Exception as error:  # noqa: BLE001
        return Err(_message(error))
    if value is None or isinstance(value, str):
        return Ok(value)
    return Err(_type_error(name, value, "str"))


def _alert_context(event):
    function = _functions.get("alert_context")
    if function is None:
        return None
    try:
        value = function(event)
        if value is None:
            return Ok(None)
        if not isinstance(value, rulehost_panther.Mapping):
            return Err(_type_error("alert_context", value, "Mapping"))
        return Ok(
            json.dumps(value, default=rulehost_panther.json_default, allow_nan=False)
        )
    except Exception as error:  # noqa: BLE001
        return Err(_message(error))


def _destinations(event):
    function = _functions.get("destinations")
    if function is None:
        return None
    try:
        value = function(event)
    except Exception as error:  # noqa: BLE001
        return Err(_message(error))
    if value is None:
        return Ok(None)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return Ok(list(value))
    return Err(_type_error("destinations", value, "list[str]"))


class RuleSource(exports.RuleSource):
    """`rule-source`: makes this instance the rule."""

    def load(self, main, mocks):
        try:
            _load(main, mocks)
        except BaseException as error:  # noqa: BLE001 - a SyntaxError, SystemExit, ...
            raise Err(_message(error))


_event = rulehost_panther.one_event


class Detection(exports.Detection):
    """Panther's functions of the loaded rule."""

    def rule(self, event):
        return _rule(_event(event))

    def title(self, event):
        return _string("title", _event(event))

    def dedup(self, event):
        return _string("dedup", _event(event))

    def unique(self, event):
        return _string("unique", _event(event))

    def severity(self, event):
        return _string("severity", _event(event))

    def alert_context(self, event):
        return _alert_context(_event(event))

    def description(self, event):
        return _string("description", _event(event))

    def reference(self, event):
        return _string("reference", _event(event))

    def runbook(self, event):
        return _string("runbook", _event(event))

    def destinations(self, event):
        return _destinations(_event(event))


# `rule` returned False: the same outcome every time.
_NO_MATCH = batch_types.Outcome_NoMatch()

# Matches whose `dedup`, `title` and `unique` returned the same strings (or None) share one
# outcome, made once: (dedup, title, unique) -> `Outcome_Matched`, with `_UNUSED` for a
# function not defined (or, for `title`, not called). Cleared when its strings pass
# `_MATCHES_MAX_BYTES`, so that it stays small beside the instance's memory cap.
_MATCHES = {}
_MATCHES_MAX_BYTES = 256 << 10
_matches_bytes = 0
_UNUSED = object()


class _Raised:
    """What a function raised, in place of its value (never equal to another)."""

    __slots__ = ("message",)

    def __init__(self, error):
        self.message = _message(error)


def _result(name, value):
    """What `_string` gives for function `name` from what it returned (`_UNUSED` when
    not defined or not called, `_Raised` when it raised)."""
    if value is _UNUSED:
        return None
    if type(value) is _Raised:
        return Err(value.message)
    if value is None or isinstance(value, str):
        return Ok(value)
    return Err(_type_error(name, value, "str"))


def _new_match(dedup, title, unique):
    """The outcome of a match whose functions returned these (as for `_result`), shared
    through `_MATCHES` when each is a str or None."""
    global _matches_bytes
    outcome = batch_types.Outcome_Matched(
        batch_types.Matched(
            _result("dedup", dedup), _result("title", title), _result("unique", unique)
        )
    )
    key = (dedup, title, unique)
    if all(v is None or v is _UNUSED or type(v) is str for v in key):
        size = sum(len(v) for v in key if type(v) is str)
        if _matches_bytes + size > _MATCHES_MAX_BYTES:
            _MATCHES.clear()
            _matches_bytes = 0
        if size <= _MATCHES_MAX_BYTES:
            _MATCHES[key] = outcome
            _matches_bytes += size
    return outcome


class Batch(exports.Batch):
    """`evaluate-batch`: `rule`, then `dedup`, `title` and `unique` on a match, for each
    event. Fields are read through registered ids, so that later calls get them packed in
    `fields` instead of one host call per read (`rulehost_panther`: only fields read often
    enough for that to pay)."""

    def evaluate_batch(self, events, fields):
        # One section per event when there are sections (wit/rulehost.wit), each the
        # cache its event starts with.
        packed = rulehost_panther.unpack_fields(fields) if fields else None
        if not packed:
            packed = [{} for _ in range(events.len())]
        outcomes = []
        append = outcomes.append
        functions = _functions
        rule = functions["rule"]
        dedup = functions.get("dedup")
        # `title` only when `dedup` is not defined (it stands in for it).
        title = functions.get("title") if dedup is None else None
        unique = functions.get("unique")
        new, cls, matches = object.__new__, PantherEvent, _MATCHES
        for index, cache in enumerate(packed):
            # `rulehost_panther.batch_event`, inline: this loop is the hot path.
            event = new(cls)
            event._source = events
            event._index = index
            event._cache = cache
            event._data = None
            # `_rule`, inline.
            try:
                matched = rule(event)
            except Exception as error:  # noqa: BLE001 - every exception is a rule error
                append(batch_types.Outcome_RuleError(_message(error)))
                continue
            if matched is False:
                append(_NO_MATCH)
            elif matched is True:
                # `dedup`, `title`, `unique` in that order, each called even when another
                # raised; the same results as a match before give the outcome made then.
                # A value that is not a str or None is never in `matches`.
                if dedup is None:
                    d = _UNUSED
                else:
                    try:
                        d = dedup(event)
                    except Exception as error:  # noqa: BLE001
                        d = _Raised(error)
                if title is None:
                    t = _UNUSED
                else:
                    try:
                        t = title(event)
                    except Exception as error:  # noqa: BLE001
                        t = _Raised(error)
                if unique is None:
                    u = _UNUSED
                else:
                    try:
                        u = unique(event)
                    except Exception as error:  # noqa: BLE001
                        u = _Raised(error)
                found = (d, t, u)
                try:
                    outcome = matches.get(found)
                except Exception:  # noqa: BLE001 - an unhashable value: never shared
                    outcome = None
                append(outcome or _new_match(*found))
            else:
                append(batch_types.Outcome_RuleError(_type_error("rule", matched, "bool")))
        rulehost_panther.batch_done(len(packed))
        return outcomes


_install_finder()
# Keep references the linter would call unused.
_ = (builtins, wit_world)
