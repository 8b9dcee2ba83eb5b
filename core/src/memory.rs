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
//! buffers smaller than [`MMAP_THRESHOLD`] come from the heap and up to [`TRIM_THRESHOLD`] of
//! freed heap stays with the process for the next ones. The programs call it first thing
//! (`zask`, `zask-scheduler`, `zask-worker`, through their `cli` entry points, which the
//! Python package's console scripts also run); the libraries never do, since a process that
//! embeds them (a Python program using the client) owns its allocator. A user who sets either parameter in the
//! environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or `GLIBC_TUNABLES`) keeps
//! their choice.

/// Buffers smaller than this come from the heap (and are kept for reuse); larger ones are
/// mapped on their own and given back when freed, as glibc does by default. 4 MiB: four
/// encrypted frames, so every frame of an encrypted value is below it.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Freed heap memory kept by the process, at the most, before the rest is given back to the
/// kernel: the frames of a 128 MiB encrypted value (glibc's default is a few MiB).
pub const TRIM_THRESHOLD: usize = 128 << 20;

/// The environment variables through which a user tunes the same parameters themselves.
const USER_SETTINGS: [&str; 3] = [
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
];

/// Asks glibc's `malloc` to keep freed receive buffers for reuse (see the module's doc).
/// Does nothing where the C library is not glibc, or when the user tuned `malloc` through
/// the environment. Returns whether it changed anything.
pub fn keep_receive_buffers() -> bool {
    if user_tuned(|name| std::env::var_os(name).is_some()) {
        log::debug!("malloc tuned by the environment; left as it is");
        return false;
    }
    set_thresholds()
}

/// Whether the user tuned malloc's thresholds in the environment (`is_set` says whether a
/// variable is set).
fn user_tuned(is_set: impl Fn(&str) -> bool) -> bool {
    USER_SETTINGS.iter().any(|name| is_set(name))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only sets allocator parameters; it takes glibc's own locks.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
    // SAFETY: as above.
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) };
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
        assert!(!user_tuned(|_| false));
        for name in USER_SETTINGS {
            assert!(user_tuned(|n| n == name), "{name}");
        }
    }

    /// The page faults of this thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn faults() -> i64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes the struct it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: initialised by the successful call.
        unsafe { usage.assume_init() }.ru_minflt
    }

    /// What ZeroMQ does with an encrypted 64 MiB value, with `malloc` and `free` as ZeroMQ
    /// calls them: 64 frames of 1 MiB, each written, all freed once the last is in. Returns
    /// the page faults of the last of three such values.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn faults_of_a_third_value() -> i64 {
        let frame = crate::frames::ENCRYPTED_FRAME + 64;
        let mut last = 0;
        for _ in 0..3 {
            let before = faults();
            let frames: Vec<*mut u8> = (0..64)
                .map(|i| {
                    // SAFETY: a plain allocation, checked, written within its size, freed below.
                    let p = unsafe { libc::malloc(frame) } as *mut u8;
                    assert!(!p.is_null());
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
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn received_frames_land_on_pages_already_faulted_in() {
        // Left to itself, glibc gives the frames' memory back after each value: the third
        // value's 64 MiB fault in again, 16,384 pages (measured: the same with and without
        // other tests running, since faults are counted for this thread only).
        let untuned = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory::tests::untuned_frames_fault_in_again",
                "--nocapture",
            ])
            .args(["--include-ignored"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&untuned.stdout);
        assert!(untuned.status.success(), "{text}");
        assert!(text.contains("faults: "), "{text}");
        assert!(keep_receive_buffers() || std::env::var_os("GLIBC_TUNABLES").is_some());
        let tuned = faults_of_a_third_value();
        assert!(tuned < 1_000, "{tuned} page faults for the third value");
    }

    /// Run alone in a process of its own by the test above (it must not be tuned).
    #[test]
    #[ignore = "run by received_frames_land_on_pages_already_faulted_in in a process of its own"]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn untuned_frames_fault_in_again() {
        let untuned = faults_of_a_third_value();
        println!("faults: {untuned}");
        assert!(
            untuned > 10_000,
            "{untuned} page faults for the third value"
        );
    }
}
