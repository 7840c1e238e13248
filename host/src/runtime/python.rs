//! The sandbox side of Python rules: one compiled runtime component (componentize-py,
//! `python/`, `make python-runtime`) serves every Python rule. A rule is a
//! [`RuleComponent`](super::RuleComponent) of the runtime with a [`RuleSource`]: each fresh
//! instance (the first, and each one that replaces an instance after a trap) is handed the
//! rule's module source and mocks through `rule-source.load` before any other call, and
//! its `import`s of helper modules are answered from [`Modules`] (`modules.find`).
//!
//! What CPython's libc imports from `wasi:filesystem` and `wasi:sockets`
//! ([`audit::RUNTIME_REFUSED`](super::audit::RUNTIME_REFUSED)) is linked to stubs that
//! refuse every call ([`refuse_files_and_sockets`]): `open()` raises an `OSError` in the
//! rule, a socket a `PermissionError`, never a trap and never access.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, Type, Val};

use super::audit::RUNTIME_REFUSED;
use super::host::HostState;
use super::wasi::WASI_VERSION;
use super::{Limits, bindings::modules};

/// Helper modules by name (Panther's `global_helpers/`): what `modules.find` serves. Read
/// once at load, so what runs is what was hashed for `rulehost.lock`.
#[derive(Debug, Default)]
pub struct Modules(BTreeMap<String, String>);

impl Modules {
    /// Modules from `(name, source)` pairs.
    pub fn new(modules: impl IntoIterator<Item = (String, String)>) -> Self {
        Modules(modules.into_iter().collect())
    }

    /// The source of module `name`.
    pub fn find(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every module, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, s)| (n.as_str(), s.as_str()))
    }
}

/// A name of the rule's module that a test replaces (Panther's `Mocks:`): calling it
/// returns `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mock {
    /// The name in the rule's module.
    pub name: String,
    /// What calling it returns, as JSON text.
    pub value: String,
}

/// What makes a runtime instance one rule: its module, the helpers it may import, and the
/// mocks of the test it runs (none in `eval`).
#[derive(Debug, Clone)]
pub struct RuleSource {
    /// The module name (the file's stem, as Panther names a rule's module).
    pub name: String,
    /// The module's source text.
    pub source: String,
    /// The helper modules it may import.
    pub modules: Arc<Modules>,
    /// The mocks in place.
    pub mocks: Vec<Mock>,
}

/// `load` runs the rule's module and the helpers it imports, once per instance: it may
/// take several times a call's deadline (a helper module defines tens of regexes), so it
/// gets this many calls' deadlines. With the default 100 ms, 1 s: a module that loops at
/// import still costs a bounded time, and fails to load.
pub const LOAD_DEADLINE_CALLS: u64 = 10;

/// The epoch deadline of `load`, in ticks.
pub(super) fn load_deadline_ticks(limits: &Limits) -> u64 {
    limits.deadline_ticks().saturating_mul(LOAD_DEADLINE_CALLS)
}

/// Core instances a runtime instance may make: componentize-py's CPython component makes
/// 14 (counted in its binary: libc, CPython, bindings, adapters), which the default of 32
/// allows. Kept at least at 32 when `--max-instances` is lower, so that a flag meant for
/// Rust rules (3 each) does not make every Python rule fail. (componentize-py's
/// `--stub-wasi` build, which rulehost does not use, makes 38.)
pub const RUNTIME_MIN_INSTANCES: usize = 32;

/// The limits of a runtime's instances: `limits`, with [`RUNTIME_MIN_INSTANCES`].
pub(super) fn runtime_limits(limits: &Limits) -> Limits {
    Limits {
        instances: limits.instances.max(RUNTIME_MIN_INSTANCES),
        ..limits.clone()
    }
}

/// The linker of a language runtime: the rules' `linker`, plus `modules`, with every
/// function of `component`'s [`RUNTIME_REFUSED`] imports that can reach a file, a socket
/// or a name lookup replaced by a stub that refuses it.
pub(super) fn runtime_linker(
    linker: &Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = linker.clone();
    modules::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )?;
    refuse_files_and_sockets(&mut linker, engine, component)?;
    Ok(linker)
}

/// Shadows wasmtime-wasi's filesystem and sockets functions that `component` imports with
/// stubs that refuse: a function returning `result<_, error-code>` returns the error code
/// that means "access denied", one returning an `option` `none` and one returning a
/// `list` an empty list (`get-directories`: no preopened folder). The few others only hand
/// out or poll a handle (`instance-network`, `subscribe`, a socket's `address-family`) and
/// stay wasmtime-wasi's, over a WASI context with no folders and no network allowed
/// (`wasi.rs`): no handle they could act on can ever be made.
fn refuse_files_and_sockets(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for (name, item) in component.component_type().imports(engine) {
        let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
        if !RUNTIME_REFUSED.contains(&unversioned) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        // wasmtime-wasi defines each interface at its own version; a guest's 0.2.x
        // resolves to it.
        let mut defined = linker.instance(&format!("{unversioned}@{WASI_VERSION}"))?;
        for (function, item) in instance.exports(engine) {
            let ComponentItem::ComponentFunc(ty) = item.ty else {
                continue;
            };
            if refusal(&ty).is_none() {
                continue;
            }
            defined.func_new(function, |mut store, ty, params, results| {
                // A handle lent to the call must be given back before it returns.
                for param in params {
                    if let Val::Resource(handle) = param {
                        handle.resource_drop(&mut store)?;
                    }
                }
                let refused = refusal(&ty)
                    .ok_or_else(|| wasmtime::Error::msg("refused: no file or network access"))?;
                if let Some(slot) = results.first_mut() {
                    *slot = refused;
                }
                Ok(())
            })?;
        }
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The refusing result of a function of type `ty`, if it has one (see
/// [`refuse_files_and_sockets`]).
fn refusal(ty: &ComponentFunc) -> Option<Val> {
    let mut results = ty.results();
    let (Some(result), None) = (results.next(), results.next()) else {
        return None;
    };
    match result {
        Type::Result(result) => {
            let Some(Type::Enum(codes)) = result.err() else {
                return None;
            };
            // `wasi:filesystem`'s code is `access`, `wasi:sockets`' `access-denied`.
            let code = ["access", "access-denied", "not-permitted"]
                .into_iter()
                .find(|c| codes.names().any(|n| n == *c))?;
            Some(Val::Result(Err(Some(Box::new(Val::Enum(code.to_owned()))))))
        }
        Type::Option(_) => Some(Val::Option(None)),
        Type::List(_) => Some(Val::List(Vec::new())),
        _ => None,
    }
}
