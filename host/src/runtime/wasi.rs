//! The WASI a rule sees: virtual and deterministic, so that its output depends only on the
//! event it is called with.
//!
//! - No environment, arguments, preopened folders or network: [`context`] grants nothing.
//! - [`EventClock`]: the wall and monotonic clocks read the event's time, not the host's.
//! - [`CallSeededRng`]: every call's random numbers come from a fixed seed.
//! - [`shadow_sleep`]: waiting on the monotonic clock returns at once; a rule cannot block
//!   the host past its deadline (epoch interruption only stops wasm code, not a host wait).
//! - [`BoundedOutput`]: captured stdout/stderr keep the first bytes and drop the rest.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _, TryRng};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::HostState;

/// Seed of `wasi:random/random` (a ChaCha generator, restarted at every call).
const SECURE_SEED: u64 = 0x7275_6c65_686f_7374; // "rulehost"
/// Seed of `wasi:random/insecure`.
const INSECURE_SEED: u64 = 0x696e_7365_6375_7265; // "insecure"
/// What `wasi:random/insecure-seed` returns; Rust's std seeds `HashMap` keys from it.
const INSECURE_SEED_VALUE: u128 = 0x7275_6c65_686f_7374_5f73_6565_6421_0000;
/// Largest `get-random-bytes` request: a rule has no use for more, and the host allocates
/// the bytes before copying them into the guest (wasmtime-wasi's default is 64 MiB).
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The per-Store handles the host uses to steer the virtual WASI between calls.
#[derive(Clone)]
pub(super) struct Virtual {
    clock: EventClock,
    calls: Arc<AtomicU64>,
    /// Clock and random reads so far: a call that reads either depends on which call it is.
    reads: Arc<AtomicU64>,
}

impl Default for Virtual {
    fn default() -> Self {
        let reads = Arc::new(AtomicU64::new(0));
        Virtual {
            clock: EventClock {
                ms: Arc::default(),
                reads: reads.clone(),
            },
            calls: Arc::default(),
            reads,
        }
    }
}

impl Virtual {
    /// Sets the time the clocks report from now on.
    pub(super) fn set_event_time(&self, ms: i64) {
        self.clock.ms.store(ms, Ordering::Relaxed);
    }

    /// Starts a call: the random generators restart from their seeds.
    pub(super) fn begin_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the rule read a clock or a random number so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// A WASI context that grants nothing and reads time and randomness from `virt`; stdout
/// and stderr go to `output` when given, else nowhere.
pub(super) fn context(virt: &Virtual, output: Option<(&BoundedOutput, &BoundedOutput)>) -> WasiCtx {
    // `WasiCtx::builder()` starts with no env, args, preopens or stdin, and no network
    // address allowed; the sockets switches below say so explicitly.
    let mut wasi = WasiCtx::builder();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(virt.clock.clone())
        .monotonic_clock(virt.clock.clone())
        .secure_random(CallSeededRng::new(SECURE_SEED, virt))
        .insecure_random(CallSeededRng::new(INSECURE_SEED, virt))
        .insecure_random_seed(INSECURE_SEED_VALUE)
        .max_random_size(MAX_RANDOM_BYTES);
    if let Some((out, err)) = output {
        wasi.stdout(out.clone()).stderr(err.clone());
    }
    wasi.build()
}

/// The event's time, in milliseconds since the Unix epoch, as both WASI clocks. A time
/// before 1970 reads as the epoch (WASI clocks are unsigned). It does not move during a
/// call, so a rule that measures elapsed time sees zero.
/// Made only by [`Virtual::default`], which shares its read counter.
#[derive(Clone)]
struct EventClock {
    ms: Arc<AtomicI64>,
    reads: Arc<AtomicU64>,
}

impl EventClock {
    fn millis(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        u64::try_from(self.ms.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

impl HostWallClock for EventClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.millis())
    }
}

impl HostMonotonicClock for EventClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.millis().saturating_mul(1_000_000)
    }
}

/// A seeded generator that restarts from its seed whenever a new call began, so the
/// numbers a call sees do not depend on the calls before it.
struct CallSeededRng {
    seed: u64,
    calls: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    seen: u64,
    rng: StdRng,
}

impl CallSeededRng {
    fn new(seed: u64, virt: &Virtual) -> Self {
        CallSeededRng {
            seed,
            calls: virt.calls.clone(),
            reads: virt.reads.clone(),
            seen: virt.calls.load(Ordering::Relaxed),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn current(&mut self) -> &mut StdRng {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let calls = self.calls.load(Ordering::Relaxed);
        if calls != self.seen {
            self.seen = calls;
            self.rng = StdRng::seed_from_u64(self.seed);
        }
        &mut self.rng
    }
}

impl TryRng for CallSeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.current().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.current().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.current().fill_bytes(dst);
        Ok(())
    }
}

/// The WASI version wasmtime-wasi 48 links every interface at (its `wit/deps`); guests
/// importing any 0.2.x resolve to it.
pub(super) const WASI_VERSION: &str = "0.2.12";
/// `monotonic-clock` at [`WASI_VERSION`].
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces `subscribe-duration` and `subscribe-instant` with pollables that are ready at
/// once. wasmtime-wasi's versions wait in the host for real time (forever for a far
/// instant), where the epoch deadline cannot reach: `std::thread::sleep(Duration::MAX)`
/// would hang the run. Virtual time does not pass during a call, so waking at once is
/// what a sleeping rule would see anyway.
pub(super) fn shadow_sleep(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, HostState>, (_nanos,): (u64,)| {
            Ok((ready(&mut store.data_mut().table)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, HostState>, (_instant,): (u64,)| {
            Ok((ready(&mut store.data_mut().table)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A pollable that is always ready.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

fn ready(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let resource = table.push(Ready)?;
    wasmtime_wasi::p2::subscribe(table, resource)
}

/// Captured stdout or stderr: keeps the first `capacity` bytes and counts the rest, which
/// are dropped. Writing never fails, so a chatty rule is never stopped for it
/// (wasmtime-wasi's `MemoryOutputPipe` traps the guest once full).
#[derive(Clone)]
pub(super) struct BoundedOutput(Arc<Mutex<Kept>>);

struct Kept {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

/// How much a guest may write per `check-write` permit (WASI streams use ~4-64 KiB).
const WRITE_PERMIT: usize = 64 << 10;

impl BoundedOutput {
    pub(super) fn new(capacity: usize) -> Self {
        BoundedOutput(Arc::new(Mutex::new(Kept {
            bytes: Vec::new(),
            capacity,
            dropped: 0,
        })))
    }

    /// The bytes kept and the number of bytes dropped.
    pub(super) fn contents(&self) -> (Vec<u8>, u64) {
        let kept = self.lock();
        (kept.bytes.clone(), kept.dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves only bytes behind: still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.lock();
        let room = kept.capacity.saturating_sub(kept.bytes.len());
        let take = room.min(bytes.len());
        kept.bytes.extend_from_slice(&bytes[..take]);
        kept.dropped += (bytes.len() - take) as u64;
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_output_keeps_the_first_bytes_and_counts_the_rest() {
        let out = BoundedOutput::new(8);
        let mut stream = out.clone();
        stream.write(bytes::Bytes::from_static(b"hello ")).unwrap();
        stream.write(bytes::Bytes::from_static(b"world!")).unwrap();
        assert_eq!(stream.check_write().unwrap(), WRITE_PERMIT);
        assert_eq!(out.contents(), (b"hello wo".to_vec(), 4));
    }

    #[test]
    fn random_restarts_at_every_call() {
        let virt = Virtual::default();
        let mut rng = CallSeededRng::new(1, &virt);
        let first = (rng.next_u64(), rng.next_u64());
        assert_ne!(first.0, first.1);
        virt.begin_call();
        assert_eq!((rng.next_u64(), rng.next_u64()), first);
        assert_eq!(virt.reads(), 4, "every draw counts as a read");
    }

    #[test]
    fn clocks_read_the_event_time() {
        let virt = Virtual::default();
        let clock = virt.clock.clone();
        virt.set_event_time(1_704_067_200_250);
        assert_eq!(
            HostWallClock::now(&clock),
            Duration::from_millis(1_704_067_200_250)
        );
        assert_eq!(
            HostMonotonicClock::now(&clock),
            1_704_067_200_250 * 1_000_000
        );
        virt.set_event_time(-5);
        assert_eq!(HostWallClock::now(&clock), Duration::ZERO);
        assert_eq!(virt.reads(), 3, "every clock read counts");
    }
}
