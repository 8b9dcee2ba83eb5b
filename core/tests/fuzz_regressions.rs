//! Every input the fuzz targets were seeded with (`fuzz/seeds/`) or that once broke a decoder
//! (`fuzz/regressions/`), run through the same entry points (`zask_core::fuzz`): they must
//! all return. (An input that crashes a target is copied to `fuzz/regressions/TARGET/` when
//! the bug is fixed: see docs/fuzzing.md.)

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_decoded_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut ran = 0;
    for (target, run) in zask_core::fuzz::TARGETS {
        for kind in ["seeds", "regressions"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).unwrap();
                run(&data);
                ran += 1;
            }
        }
    }
    assert!(ran >= 80, "only {ran} inputs found under fuzz/");
}

/// The fuzz targets and the list of them here agree with `fuzz/Cargo.toml`.
#[test]
fn every_target_is_built_by_cargo_fuzz() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml"))
            .unwrap();
    for (target, _) in zask_core::fuzz::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no target {target}"
        );
    }
}
