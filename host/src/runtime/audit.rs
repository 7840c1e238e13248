//! The load-time audit: [`Audit`] says what a component imports and exports, and whether
//! a rule may be built from it.
//!
//! A rule may import only `rulehost:rules/types@1.x` and a short list of WASI 0.2.x
//! interfaces ([`WASI_ALLOWED`]) that Rust's `std` pulls in even for pure code. Anything
//! else (`wasi:filesystem`, `wasi:sockets`, `wasi:http`, unknown packages, another version
//! line of our own package) is refused before linking, with the import named, so a rule
//! that *would* need a capability fails at load instead of at its first call. The names
//! come from wasmtime's own view of the compiled component
//! ([`Component::component_type`]); nothing here parses wasm.
//!
//! A language runtime (the Python runtime, [`ComponentKind::RuleRuntime`]) may also
//! import `rulehost:rules/modules@1.x` and the `wasi:filesystem` and `wasi:sockets`
//! interfaces of [`RUNTIME_REFUSED`], which CPython's libc imports even when no rule
//! uses them: they are linked to host stubs that refuse every call (`python.rs`).

use std::fmt;
use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::LoadError;

/// Our own package: the rule world imports `types` and exports `detection` (and
/// optionally `batch`) from it.
const PACKAGE: &str = "rulehost:rules";
/// The version line of [`PACKAGE`] this host speaks (`1.x`): wasmtime's linker accepts
/// any semver-compatible version, so a rule built against 1.2.0 links against our 1.0.0
/// as far as it uses what 1.0 has.
const PACKAGE_LINE: VersionLine = VersionLine(1, 0);
/// The WASI version line the linker provides (`wasmtime-wasi` 48 serves 0.2.0 to 0.2.6).
const WASI_LINE: VersionLine = VersionLine(0, 2);
/// The export every rule must provide.
pub const DETECTION: &str = "rulehost:rules/detection@1.0.0";
/// The export a language runtime must provide besides [`DETECTION`].
pub const RULE_SOURCE: &str = "rulehost:rules/rule-source@1.0.0";
/// The functions of `detection` (wit/rulehost.wit; a unit test keeps the two in step).
const DETECTION_FUNCTIONS: &[&str] = &[
    "rule",
    "title",
    "dedup",
    "unique",
    "severity",
    "alert-context",
    "description",
    "reference",
    "runbook",
    "destinations",
];

/// What the host serves for an allowed WASI import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provision {
    /// Linked, with no capability behind it: empty environment and arguments, empty stdin,
    /// stdout/stderr discarded (or captured by `rulehost test`), no terminal, `exit` traps.
    Empty,
    /// Virtualised clocks: they read the time of the event under evaluation, so a rule's
    /// answer depends on its input only.
    EventTime,
    /// Virtualised randomness: numbers come from a fixed seed, for the same reason.
    FixedSeed,
    /// Linked to host stubs that refuse every call (language runtimes only): opening a
    /// file, a socket or a name lookup fails with an error code the guest reports.
    Refused,
}

/// What a component is meant to be, which decides the imports it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// One rule (world `rule` or `fast-rule`).
    Rule,
    /// A runtime for rules written in another language (world `rule-runtime`): it also
    /// exports `rule-source`, imports `modules`, and may import [`RUNTIME_REFUSED`].
    RuleRuntime,
}

/// The WASI 0.2.x interfaces a rule may import. Rust's `std` for `wasm32-wasip2` imports
/// the `cli` and `io` ones even in a rule that never prints; `clocks` and `random` are
/// used by `std::time` and hash maps.
pub const WASI_ALLOWED: &[(&str, Provision)] = &[
    ("wasi:cli/environment", Provision::Empty),
    ("wasi:cli/exit", Provision::Empty),
    ("wasi:cli/stdin", Provision::Empty),
    ("wasi:cli/stdout", Provision::Empty),
    ("wasi:cli/stderr", Provision::Empty),
    ("wasi:cli/terminal-input", Provision::Empty),
    ("wasi:cli/terminal-output", Provision::Empty),
    ("wasi:cli/terminal-stdin", Provision::Empty),
    ("wasi:cli/terminal-stdout", Provision::Empty),
    ("wasi:cli/terminal-stderr", Provision::Empty),
    ("wasi:io/poll", Provision::Empty),
    ("wasi:io/error", Provision::Empty),
    ("wasi:io/streams", Provision::Empty),
    ("wasi:clocks/wall-clock", Provision::EventTime),
    ("wasi:clocks/monotonic-clock", Provision::EventTime),
    ("wasi:random/random", Provision::FixedSeed),
    ("wasi:random/insecure", Provision::FixedSeed),
    ("wasi:random/insecure-seed", Provision::FixedSeed),
];

/// The `wasi:filesystem` and `wasi:sockets` interfaces a language runtime may import:
/// CPython's libc (componentize-py) imports them whatever the rule does. Each is linked to
/// stubs that refuse every call ([`Provision::Refused`]).
pub const RUNTIME_REFUSED: &[&str] = &[
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The audit's view of one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportVerdict {
    /// `rulehost:rules/types@1.x`: the events a rule reads.
    Types,
    /// `rulehost:rules/modules@1.x`: helper modules the host serves (language runtimes
    /// only).
    Modules,
    /// An allowed WASI 0.2.x interface, served as described.
    Wasi(Provision),
    /// Our own package at a version line this host does not speak.
    IncompatibleVersion,
    /// Anything else: refused.
    Forbidden,
}

/// Why a component does not fit the `rule` world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldMismatch {
    /// No `rulehost:rules/detection@1.x` export at all.
    NoDetection {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// `detection` is exported but lacks functions.
    MissingFunctions {
        /// The export.
        export: String,
        /// The functions it lacks.
        missing: Vec<String>,
    },
    /// A language runtime without the `rulehost:rules/rule-source@1.x` export.
    NoRuleSource,
}

impl fmt::Display for WorldMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldMismatch::NoDetection { exports } if exports.is_empty() => {
                write!(f, "it does not export `{DETECTION}` (it exports nothing)")
            }
            WorldMismatch::NoDetection { exports } => write!(
                f,
                "it does not export `{DETECTION}` (it exports {})",
                backticked(exports)
            ),
            WorldMismatch::MissingFunctions { export, missing } => {
                write!(f, "its `{export}` lacks {}", backticked(missing))
            }
            WorldMismatch::NoRuleSource => write!(
                f,
                "it does not export `{RULE_SOURCE}`, which a rule runtime needs"
            ),
        }
    }
}

/// What a compiled component imports and exports, judged against the rule world.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Every import, sorted by name, with its verdict.
    pub imports: Vec<(String, ImportVerdict)>,
    /// Every export name, sorted.
    pub exports: Vec<String>,
    /// Our interfaces at an incompatible version (imports or exports), sorted.
    pub incompatible: Vec<String>,
    /// Set when the component does not fit the `rule` world.
    pub world: Option<WorldMismatch>,
}

impl Audit {
    /// Audits a compiled component as a rule.
    pub fn of(engine: &Engine, component: &Component) -> Audit {
        Self::of_kind(engine, component, ComponentKind::Rule)
    }

    /// Audits a compiled component as a rule or a language runtime.
    pub fn of_kind(engine: &Engine, component: &Component, kind: ComponentKind) -> Audit {
        let ty = component.component_type();
        let mut imports: Vec<(String, ImportVerdict)> = ty
            .imports(engine)
            .map(|(name, _)| (name.to_owned(), judge_import(name, kind)))
            .collect();
        imports.sort_by(|a, b| a.0.cmp(&b.0));
        let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        exports.sort();

        let mut incompatible: Vec<String> = imports
            .iter()
            .filter(|(_, v)| *v == ImportVerdict::IncompatibleVersion)
            .map(|(n, _)| n.clone())
            .collect();
        let mut world = Some(WorldMismatch::NoDetection {
            exports: exports.clone(),
        });
        for (name, item) in ty.exports(engine) {
            let Some(parsed) = InterfaceName::parse(name) else {
                continue;
            };
            if parsed.package != PACKAGE || parsed.interface != "detection" {
                continue;
            }
            if !parsed.is_on(PACKAGE_LINE) {
                incompatible.push(name.to_owned());
                continue;
            }
            let found: Vec<String> = match item.ty {
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(engine)
                    .map(|(n, _)| n.to_owned())
                    .collect(),
                _ => Vec::new(),
            };
            let missing: Vec<String> = DETECTION_FUNCTIONS
                .iter()
                .filter(|f| !found.iter().any(|n| n == *f))
                .map(|f| (*f).to_owned())
                .collect();
            world = (!missing.is_empty()).then(|| WorldMismatch::MissingFunctions {
                export: name.to_owned(),
                missing,
            });
        }
        if kind == ComponentKind::RuleRuntime
            && world.is_none()
            && !ty.exports(engine).any(|(name, _)| {
                InterfaceName::parse(name).is_some_and(|n| {
                    n.package == PACKAGE && n.interface == "rule-source" && n.is_on(PACKAGE_LINE)
                })
            })
        {
            world = Some(WorldMismatch::NoRuleSource);
        }
        incompatible.sort();
        Audit {
            imports,
            exports,
            incompatible,
            world,
        }
    }

    /// The imports that are refused, sorted.
    pub fn forbidden(&self) -> Vec<String> {
        self.imports
            .iter()
            .filter(|(_, v)| *v == ImportVerdict::Forbidden)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every reason to refuse the component, most fundamental first: a version this host
    /// does not speak, then the wrong world, then forbidden imports. Empty when accepted.
    pub fn problems(&self, path: &Path) -> Vec<LoadError> {
        let mut problems = Vec::new();
        if let Some(name) = self.incompatible.first() {
            problems.push(LoadError::IncompatibleVersion {
                path: path.to_owned(),
                name: name.clone(),
            });
        }
        // An incompatible `detection` is also "no detection@1.x": say it once.
        if let Some(mismatch) = &self.world
            && problems.is_empty()
        {
            problems.push(LoadError::WrongWorld {
                path: path.to_owned(),
                mismatch: mismatch.clone(),
            });
        }
        let forbidden = self.forbidden();
        if !forbidden.is_empty() {
            problems.push(LoadError::ForbiddenImports {
                path: path.to_owned(),
                imports: forbidden,
            });
        }
        problems
    }

    /// `Ok` when a rule may be built from the component, else the first of [`Self::problems`].
    pub fn check(&self, path: &Path) -> Result<(), LoadError> {
        match self.problems(path).into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

/// Refuses what is not a component before compiling it: other files, core modules, and
/// wasmtime's own precompiled artifacts (which `Component::from_binary` would reject with
/// a less helpful message; rulehost never deserializes artifacts it did not write).
pub(super) fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let path = path.to_owned();
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(LoadError::Precompiled { path });
    }
    // The preamble is `\0asm`, a 16-bit version and a 16-bit layer: layer 0 is a core
    // module, layer 1 a component (component-model Binary.md, "Component Definitions").
    match bytes {
        [0, b'a', b's', b'm', _, _, 0, 0, ..] => Err(LoadError::CoreModule { path }),
        [0, b'a', b's', b'm', ..] => Ok(()),
        _ => Err(LoadError::NotWasm { path }),
    }
}

fn judge_import(name: &str, kind: ComponentKind) -> ImportVerdict {
    let Some(parsed) = InterfaceName::parse(name) else {
        return ImportVerdict::Forbidden;
    };
    if parsed.package == PACKAGE {
        // Another version line of our package (0.x's `event-api`, a 2.0) is a rule built
        // for another host, whatever the interface is called there.
        return match (parsed.interface, parsed.is_on(PACKAGE_LINE)) {
            (_, false) => ImportVerdict::IncompatibleVersion,
            ("types", true) => ImportVerdict::Types,
            ("modules", true) if kind == ComponentKind::RuleRuntime => ImportVerdict::Modules,
            _ => ImportVerdict::Forbidden,
        };
    }
    let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
    let refused = (kind == ComponentKind::RuleRuntime)
        .then(|| RUNTIME_REFUSED.iter().find(|n| **n == unversioned))
        .flatten()
        .map(|_| Provision::Refused);
    let allowed = WASI_ALLOWED
        .iter()
        .find(|(n, _)| *n == unversioned)
        .map(|(_, p)| *p);
    match allowed.or(refused) {
        Some(provision) if parsed.is_on(WASI_LINE) => ImportVerdict::Wasi(provision),
        _ => ImportVerdict::Forbidden,
    }
}

/// A version line, as semver has it: from 1.0 on, versions of one major version are
/// compatible (1.0.0 and 1.4.2); before it, of one `major.minor` (0.1.0 and 0.1.7, not
/// 0.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionLine(u64, u64);

/// `namespace:package/interface@version`, as component import and export names spell
/// interfaces.
struct InterfaceName<'a> {
    package: &'a str,
    interface: &'a str,
    version: Option<&'a str>,
}

impl<'a> InterfaceName<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((p, v)) => (p, Some(v)),
            None => (name, None),
        };
        let (package, interface) = path.rsplit_once('/')?;
        package.contains(':').then_some(InterfaceName {
            package,
            interface,
            version,
        })
    }

    /// Whether the version is `major.minor.patch` on `line`; pre-releases are not.
    fn is_on(&self, line: VersionLine) -> bool {
        let Some(version) = self.version else {
            return false;
        };
        let parts: Vec<Option<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
        // Semver: from 1.0 on the major version is the line; before it, major.minor.
        matches!(parts.as_slice(), [Some(major), Some(minor), Some(_)]
            if *major == line.0 && (line.0 >= 1 || *minor == line.1))
    }
}

/// `a`, `b` and `c` for error messages.
pub(super) fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_judged_by_name_and_version_line() {
        use ImportVerdict::*;
        for (name, verdict) in [
            ("rulehost:rules/types@1.0.0", Types),
            ("rulehost:rules/types@1.3.0", Types),
            ("rulehost:rules/event-api@0.2.0", IncompatibleVersion),
            ("rulehost:rules/event-api@0.1.0", IncompatibleVersion),
            ("rulehost:rules/types@2.0.0", IncompatibleVersion),
            ("rulehost:rules/types", IncompatibleVersion),
            ("rulehost:rules/event-api@1.0.0", Forbidden),
            ("rulehost:rules/detection@1.0.0", Forbidden),
            ("rulehost:rules/secrets@1.0.0", Forbidden),
            ("wasi:cli/stdout@0.2.0", Wasi(Provision::Empty)),
            ("wasi:io/streams@0.2.6", Wasi(Provision::Empty)),
            ("wasi:clocks/wall-clock@0.2.6", Wasi(Provision::EventTime)),
            (
                "wasi:random/insecure-seed@0.2.3",
                Wasi(Provision::FixedSeed),
            ),
            ("wasi:cli/stdout@0.3.0", Forbidden),
            ("wasi:cli/stdout@0.2.0-rc-2023-11-10", Forbidden),
            ("wasi:cli/stdout", Forbidden),
            ("wasi:filesystem/types@0.2.6", Forbidden),
            ("wasi:filesystem/preopens@0.2.0", Forbidden),
            ("wasi:sockets/tcp@0.2.6", Forbidden),
            ("wasi:http/outgoing-handler@0.2.6", Forbidden),
            ("wasi:clocks/timezone@0.2.6", Forbidden),
            ("evil:cli/stdout@0.2.0", Forbidden),
            ("stdout", Forbidden),
        ] {
            assert_eq!(judge_import(name, ComponentKind::Rule), verdict, "{name}");
        }
    }

    #[test]
    fn a_rule_runtime_may_import_modules_and_refused_files_and_sockets() {
        use ImportVerdict::*;
        for (name, rule, runtime) in [
            ("rulehost:rules/modules@1.0.0", Forbidden, Modules),
            (
                "wasi:filesystem/types@0.2.9",
                Forbidden,
                Wasi(Provision::Refused),
            ),
            (
                "wasi:sockets/tcp@0.2.9",
                Forbidden,
                Wasi(Provision::Refused),
            ),
            ("wasi:sockets/tcp@0.3.0", Forbidden, Forbidden),
            ("wasi:http/outgoing-handler@0.2.9", Forbidden, Forbidden),
            (
                "wasi:cli/stdout@0.2.9",
                Wasi(Provision::Empty),
                Wasi(Provision::Empty),
            ),
        ] {
            assert_eq!(judge_import(name, ComponentKind::Rule), rule, "{name}");
            assert_eq!(
                judge_import(name, ComponentKind::RuleRuntime),
                runtime,
                "{name}"
            );
        }
    }

    #[test]
    fn detection_functions_match_the_wit() {
        let wit = include_str!("../../../wit/rulehost.wit");
        let body = wit
            .split("interface detection {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap();
        let declared: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().split_once(": func("))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(declared, DETECTION_FUNCTIONS);
        assert!(wit.contains(&format!(
            "package {PACKAGE}@{}.{}.0;",
            PACKAGE_LINE.0, PACKAGE_LINE.1
        )));
    }

    #[test]
    fn headers_tell_core_modules_components_and_other_bytes_apart() {
        let path = Path::new("r.wasm");
        assert!(matches!(
            check_header(path, b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_header(path, b"\0asm\x0d\0\x01\0").is_ok());
        for bytes in [&b""[..], b"\0as", b"(component)", b"\x7fELF\x02\x01\x01\0"] {
            assert!(
                matches!(check_header(path, bytes), Err(LoadError::NotWasm { .. })),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn precompiled_artifacts_are_refused_whatever_their_name() {
        let engine = Engine::default();
        let artifact = engine.precompile_component(b"\0asm\x0d\0\x01\0").unwrap();
        assert!(matches!(
            check_header(Path::new("innocent.wasm"), &artifact),
            Err(LoadError::Precompiled { .. })
        ));
    }
}
