//! The binaries' allocator (mimalloc) and its one setting.

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, v3 as libmimalloc-sys 0.1.49
/// builds it; a test checks the value reads back).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the process before it goes back to the system.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Keeps freed memory for 10 s before giving it back to the system (mimalloc's default is
/// 1 s). Loading rules frees tens of MB that the run then allocates again; each page given
/// back in between is faulted in and zeroed again: 400-900 faults of 2 MiB huge pages on
/// `make bench`'s 1M-event file, none with this setting (and mimalloc's memory now takes
/// no huge pages at all: its `no_thp` feature, see the workspace's `Cargo.toml`).
/// Call it first thing in `main`.
#[allow(
    unsafe_code,
    reason = "mimalloc's options are set through its C API only"
)]
pub fn keep_freed_memory() {
    // SAFETY: sets one integer option; mimalloc reads its options on each purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code, reason = "reads options through mimalloc's C API")]
    fn the_option_set_is_the_purge_delay() {
        // SAFETY: each reads one integer option.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // v3's default for `purge_delay`, which no neighbouring option has.
            assert_eq!(get(super::PURGE_DELAY), 1000);
        }
        let neighbours = [get(super::PURGE_DELAY - 1), get(super::PURGE_DELAY + 1)];
        super::keep_freed_memory();
        assert_eq!(get(super::PURGE_DELAY), super::PURGE_DELAY_MS);
        let after = [get(super::PURGE_DELAY - 1), get(super::PURGE_DELAY + 1)];
        assert_eq!(after, neighbours);
    }
}
