//! The memory allocator's settings, made before anything else runs.

/// Keeps glibc's allocator from handing request-body memory back to the kernel after every
/// request, unless the operator set `glibc.malloc` tunables of their own.
///
/// Bodies arrive in buffers of up to a few hundred KiB that hyper allocates as it reads and
/// that are freed once written and hashed. By default glibc returns such memory as soon as
/// 128 KiB lie free at the top of a heap (`madvise(MADV_DONTNEED)`), so the next buffer
/// faults in and zeroes fresh pages: 7% of all CPU time during a monolithic push. Without
/// that, the server used 15% less CPU per push and push-mono ran −1 to +30% faster side by
/// side (README, "Performance"). Peak RSS under 16 concurrent pushes rose by about 10 MiB
/// (40-48 MiB); after a burst up to 64 MiB per heap may stay mapped for reuse.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned_by_operator = std::env::var("GLIBC_TUNABLES")
            .is_ok_and(|tunables| tunables.contains("glibc.malloc."));
        if !tuned_by_operator {
            // SAFETY: `mallopt` only sets allocator parameters; it is called before any
            // other thread exists.
            unsafe {
                // Explicit values also fix the mmap threshold, which glibc otherwise adapts:
                // body buffers stay below it, so they come from (and return to) the heap.
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        }
    }
}
