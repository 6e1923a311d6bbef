//! `aigc`: the command-line front end. Thin: it parses arguments and calls the library.

mod cli;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    cli::run()
}

/// glibc's malloc hands blocks above 128 KiB straight back to the OS on free, so every
/// training step faulted its tensor buffers in afresh (a quarter of the run time went to the
/// kernel). Serving blocks up to 32 MiB from the heap, and never trimming it, lets freed
/// buffers be reused. The training thread is not the process's main thread, so its blocks
/// come from a per-thread arena, whose heaps grew a few pages at a time (one `mprotect` each)
/// and were unmapped when empty: thousands of calls, page faults and TLB flushes a step. A
/// 64 MiB top pad (a heap's largest size) makes each new heap whole at once and keeps empty
/// ones: the audio recipe's step took about a third less time, the image and text recipes' a
/// tenth less, and the text recipe's runs no longer peaked at 900+ MB instead of 530.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only adjusts allocator tuning knobs; it is called before any other thread
    // exists and with documented parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
