//! How a zask program asks the C allocator to keep the buffers ZeroMQ receives into.
//!
//! ZeroMQ (C++) allocates a buffer with `malloc` for every frame it receives that is larger
//! than its own 8 KiB batches, on its I/O thread. On an encrypted connection a large value
//! arrives in frames of 1 MiB ([`crate::frames::ENCRYPTED_FRAME`]), all alive until the last
//! one is in; then they are joined and freed. glibc's `malloc`, left to itself, either maps
//! each such buffer on its own or grows its heap for them, and in both cases gives the memory
//! back to the kernel once they are freed: the next value's frames then land on fresh pages,
//! each a page fault. For a 64 MiB value that is about 16,000 faults, which cost the receiving
//! I/O thread about 30 ms, as much as decrypting it. Which of its ways glibc takes depends on
//! what was allocated before, so the same transfer ran at 1.7 GB/s in one run of
//! `zask bench` and at 0.8 GB/s in the next (`docs/benchmarks.md`).
//!
//! [`keep_receive_buffers`] sets two of glibc's documented parameters (`mallopt(3)`) so that
//! buffers smaller than [`MMAP_THRESHOLD`] come from the heap and freed heap memory stays with
//! the process for the next ones, up to [`TRIM_THRESHOLD`] per allocation area. (glibc gives
//! each busy thread an area of its own; a thread's area grows in heaps of 64 MiB, and a heap
//! left wholly empty is given back whatever the threshold, so what ZeroMQ's I/O thread keeps
//! is in practice the memory of the last 64 MiB of frames.) The programs call it first thing
//! (`zask`, `zask-scheduler`, `zask-worker`, through their `cli` entry points, which the
//! Python package's console scripts also run); the libraries never do, since a process that
//! embeds them (a Python program using the client) owns its allocator. A user who sets either
//! parameter in the environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or
//! `glibc.malloc.mmap_threshold` / `glibc.malloc.trim_threshold` in `GLIBC_TUNABLES`) keeps
//! their choice.

/// Buffers smaller than this come from the heap (and are kept for reuse); larger ones are
/// mapped on their own and given back when freed, as glibc does by default. 4 MiB: four
/// encrypted frames, so every frame of an encrypted value is below it.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Freed memory at the top of a heap kept by the process, at the most, before the rest is
/// given back to the kernel (glibc's default: twice the largest buffer it mapped on its own,
/// a few MiB): 64 MiB, the size of a thread's heap, so a thread's heap is never trimmed.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Asks glibc's `malloc` to keep freed receive buffers for reuse (see the module's doc).
/// Does nothing where the C library is not glibc, or when the user tuned these parameters
/// through the environment. Returns whether it changed anything.
pub fn keep_receive_buffers() -> bool {
    let tuned_by_user = user_tuned(|name| std::env::var(name).ok());
    if tuned_by_user {
        log::debug!("malloc's thresholds are set in the environment; left as they are");
        return false;
    }
    set_thresholds()
}

/// Whether the user set malloc's thresholds in the environment (`var` reads a variable).
fn user_tuned(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_MMAP_THRESHOLD_").is_some()
        || var("MALLOC_TRIM_THRESHOLD_").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|t| {
            t.contains("glibc.malloc.mmap_threshold") || t.contains("glibc.malloc.trim_threshold")
        })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let set = |parameter: libc::c_int, value: usize| match libc::c_int::try_from(value) {
        // SAFETY: mallopt only sets an allocator parameter; it takes glibc's own locks.
        Ok(value) => unsafe { libc::mallopt(parameter, value) },
        Err(_) => 0,
    };
    let mmap = set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    let trim = set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    if mmap != 1 || trim != 1 {
        log::debug!("mallopt refused a threshold (mmap: {mmap}, trim: {trim})");
    }
    mmap == 1 && trim == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_own_settings_are_kept() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!user_tuned(env(&[])));
        assert!(user_tuned(env(&[("MALLOC_MMAP_THRESHOLD_", "1048576")])));
        assert!(user_tuned(env(&[("MALLOC_TRIM_THRESHOLD_", "65536")])));
        assert!(user_tuned(env(&[(
            "GLIBC_TUNABLES",
            "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=65536"
        )])));
        // Tunables of other things are not a choice about these.
        assert!(!user_tuned(env(&[(
            "GLIBC_TUNABLES",
            "glibc.pthread.rseq=0"
        )])));
    }

    /// Where the tests below can run: glibc on a 64-bit Linux (where mallopt takes 4 MiB).
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    mod faults {
        use super::super::*;

        /// Set in the process the test below starts, to measure glibc left to itself.
        const CHILD: &str = "ZASK_TEST_UNTUNED_MALLOC_CHILD";

        /// The page faults of this thread so far.
        fn faults() -> i64 {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage writes the struct it is given.
            let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
            assert_eq!(rc, 0);
            // SAFETY: initialised by the successful call.
            unsafe { usage.assume_init() }.ru_minflt
        }

        /// What ZeroMQ's I/O thread does with an encrypted 64 MiB value, with `malloc` and
        /// `free` as ZeroMQ calls them: 64 frames of 1 MiB, each written, all freed once the
        /// last is in. Returns the page faults of the last of three such values.
        fn faults_of_a_third_value() -> i64 {
            let frame = crate::frames::ENCRYPTED_FRAME + 64;
            let mut last = 0;
            for _ in 0..3 {
                let before = faults();
                let frames: Vec<*mut u8> = (0..64)
                    .map(|i| {
                        // SAFETY: a plain allocation of `frame` bytes.
                        let p = unsafe { libc::malloc(frame) } as *mut u8;
                        assert!(!p.is_null());
                        // SAFETY: `p` is a live allocation of `frame` bytes, written within.
                        unsafe { std::ptr::write_bytes(p, i as u8, frame) };
                        p
                    })
                    .collect();
                for p in frames {
                    // SAFETY: allocated above with malloc, freed once.
                    unsafe { libc::free(p as *mut libc::c_void) };
                }
                last = faults() - before;
            }
            last
        }

        #[test]
        fn received_frames_land_on_pages_already_faulted_in() {
            // glibc left to itself, in a process of its own (the tuning is process-wide), and
            // without the user's settings.
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "memory::tests::faults::untuned", "--nocapture"])
                .arg("--include-ignored")
                .env(CHILD, "1")
                .env_remove("MALLOC_MMAP_THRESHOLD_")
                .env_remove("MALLOC_TRIM_THRESHOLD_")
                .env_remove("GLIBC_TUNABLES")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&child.stdout);
            assert!(child.status.success(), "{text}");
            let untuned: i64 = text
                .lines()
                .find_map(|l| l.strip_prefix("faults: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no count of faults in {text:?}"));
            assert!(set_thresholds());
            let tuned = faults_of_a_third_value();
            // Measured here: 16,355 page faults untuned (the 64 MiB faulted in again), 257
            // tuned (the one frame past the thread's first 64 MiB heap). Where the kernel backs
            // the heap with huge pages by itself (transparent huge pages "always"), few faults
            // happen either way, and there is nothing to compare.
            if untuned < 1_000 {
                eprintln!("only {untuned} faults untuned (huge pages?): nothing to compare");
                return;
            }
            assert!(
                tuned * 10 < untuned,
                "the third value faulted {tuned} pages in, against {untuned} untuned"
            );
        }

        /// Run by the test above in a process of its own (does nothing elsewhere).
        #[test]
        #[ignore = "run by received_frames_land_on_pages_already_faulted_in"]
        fn untuned() {
            if std::env::var_os(CHILD).is_some() {
                println!("faults: {}", faults_of_a_third_value());
            }
        }
    }
}
