//! What a zask program (`zask-scheduler`, `zask-worker`, `zask`) does first, before reading
//! its command line: logging, the allocator, and a word about renamed variables.

/// Starts logging to stderr (`RUST_LOG`, or `default_level` without it); asks the C
/// allocator to keep the buffers values are received into ([`crate::memory`]: a program owns
/// its process, so it may); and warns about each variable in `renamed` (old name, new name)
/// that is set under its old name only, saying the `program`'s name for it now. Before the
/// command line is parsed, so that a line the parser refuses still shows the hint.
pub fn begin(program: &str, default_level: &str, renamed: &[(&str, &str)]) {
    let _ =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
            .try_init();
    crate::memory::keep_receive_buffers();
    for (old, new) in renamed {
        if std::env::var_os(old).is_some() && std::env::var_os(new).is_none() {
            log::warn!("{old} is set but no longer read: the {program}'s variable is {new}");
        }
    }
}
