//! Giving freed memory back to the system: glibc's thresholds fixed at start, and what loading a
//! configuration freed handed back once it is loaded.
//!
//! glibc's malloc returns pages to the system only from the top of each arena. Loading a large
//! configuration frees tens of MB of parse trees whose pages sit below the blocks that outlive
//! the load (the providers' settings), so without help the process keeps its start-up peak for
//! life: a 50-64 MiB arena at 10 000 providers, more than the providers' own state
//! (BENCHMARKS.md, round five). `malloc_trim(0)` walks every arena and hands the free pages in
//! it back (`madvise`), leaving live blocks where they are.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod scratch;

/// The process's global allocator (declared in `lib.rs`): glibc's, with the scratch region
/// [`settle`] copies through.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use scratch::Allocator;
/// The process's global allocator: the system's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub use std::alloc::System as Allocator;

/// Below this size a block comes from an arena; above, from its own mapping, unmapped when freed.
/// Also how much free memory at the top of an arena is kept rather than given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD_BYTES: i32 = 128 * 1024;

/// One arena for every thread. glibc gives each thread that allocates an arena of its own (up to
/// eight per core); the `/metrics` render runs on a blocking-pool thread, and its arena kept the
/// pages of the last render (about 14 MiB at 10 000 providers, BENCHMARKS.md round seven) while
/// the main arena had free room. The exporter's threads are one async worker by default, the
/// render and the file reads: they seldom allocate at the same moment, so one lock costs nothing
/// measurable (the benchmark's CPU per cycle, same round).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 1;

/// Fixes glibc's mmap and trim thresholds at their documented defaults (128 KiB), turning off
/// their dynamic adjustment. Freeing one large mapped block (the TOML parser's 16 MB token list
/// at 10 000 providers) otherwise raises both to that block's size, up to 32 MiB, and from then
/// on an arena keeps that much free memory at its top for good: 27 MiB of the loader's arena
/// stayed resident at 10 000 providers (BENCHMARKS.md, round five). Also limits the arenas to
/// [`ARENAS`]. Left alone when the operator
/// tuned malloc through `GLIBC_TUNABLES` or `MALLOC_*_` variables. Call before other threads
/// start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_allocator_thresholds() {
    let tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|tunables| tunables.to_string_lossy().contains("malloc"))
        || std::env::vars_os().any(|(name, _)| {
            let name = name.to_string_lossy();
            name.starts_with("MALLOC_") && name.ends_with('_')
        });
    if tuned {
        return;
    }
    // SAFETY: mallopt takes two integers and no pointer; glibc serializes it with every other
    // allocator call. An unknown parameter or value is refused (returns 0), never undefined.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_allocator_thresholds() {}

/// Moves a loaded value (built on a loader thread, its blocks scattered among the parse's freed
/// ones) into fresh blocks, drops the original, and hands back every page that leaves free.
/// Without the move, the freed pages between the value's blocks stay resident: each holds a few
/// live bytes.
///
/// The value is copied twice: first into the scratch region (outside the heap), then, once the
/// original is freed and the heap's free memory has joined up, back into the heap, where it
/// lands packed. Copying twice within the heap left the result to chance: which holes each
/// copy's blocks fitted depended on their sizes, and the same 10 000 providers settled into 35
/// or 40 MiB depending on the length of the configuration file's path (BENCHMARKS.md, round
/// nine).
pub fn settle<T: Clone>(loaded: T) -> T {
    let started = std::time::Instant::now();
    let (settled, released) = move_out_and_back(loaded);
    tracing::debug!(released, took = ?started.elapsed(), "freed memory handed back to the system");
    settled
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn move_out_and_back<T: Clone>(loaded: T) -> (T, bool) {
    // One settle at a time: the scratch region is one per process.
    let _one = scratch::ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outside = scratch::into_scratch(|| loaded.clone());
    drop(loaded);
    let mut released = release_freed_memory();
    let settled = outside.clone();
    // The scratch region is unmapped with its last block.
    drop(outside);
    released |= release_freed_memory();
    (settled, released)
}

/// Other allocators keep less: one copy, to drop what the loader built around the value.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn move_out_and_back<T: Clone>(loaded: T) -> (T, bool) {
    let settled = loaded.clone();
    drop(loaded);
    (settled, release_freed_memory())
}

/// Returns what the allocator holds free to the system; `true` when it gave anything back.
/// Called when a configuration has been loaded (see [`settle`]) and after each `/metrics`
/// render, never per cycle: the walk locks each arena in turn.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed_memory() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc serializes it with
    // every other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl's, the BSDs', macOS's) have no such call and keep less.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// What settles is equal to what was loaded and lives on after the scratch region is gone:
    /// reading it would fault, and freeing it corrupt the heap, were any of its blocks left there.
    #[test]
    fn a_settled_value_is_equal_and_outlives_the_scratch_region() {
        let loaded: Vec<(String, Vec<u32>)> = (0..5000)
            .map(|i| (format!("provider-{i}"), (0..i % 7).collect()))
            .collect();
        let settled = settle(loaded.clone());
        {
            let _one = scratch::ONE_AT_A_TIME
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            assert!(!scratch::region_mapped());
        }
        assert_eq!(settled, loaded);
        let mut grown = settled;
        grown[0].0.push_str(&"x".repeat(1000));
        grown.truncate(10);
        assert_eq!(grown[9].0, "provider-9");
        assert!(grown[0].0.ends_with("xxx"));
    }
}
