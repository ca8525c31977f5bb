//! The fuzz targets on the stable toolchain, as part of `cargo test`.
//!
//! `cargo fuzz` needs libFuzzer's coverage instrumentation; this runs the
//! very same target functions (`fuzz/src/lib.rs`, included by path) without
//! it:
//!
//! - the seed corpus under `fuzz/corpus-seeds/<target>/` must match what
//!   `fuzz/src/seeds.rs` builds with sol's encoder
//!   (`SOL_WRITE_SEEDS=1 cargo test --test fuzz_corpus` rewrites it);
//! - every seed, and every crash kept under `tests/fixtures/fuzz/<target>/`,
//!   is replayed;
//! - a bounded random-mutation loop (bit flips, byte changes, insertions,
//!   deletions, splices of seeds) runs each target for twenty thousand inputs.
//!   `SOL_FUZZ_ITERATIONS` and `SOL_FUZZ_SEED` make it run longer or
//!   elsewhere. An input that panics is written to
//!   `target/fuzz-failures/<target>-<seed>-<n>` before the test fails.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sol::test_rng::XorShift;
use targets::seeds::{seeds, TARGETS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_fn(target: &str) -> fn(&[u8]) {
    match target {
        "decode" => targets::decode,
        "session" => targets::session,
        "config" => targets::config,
        "passwd" => targets::passwd,
        "acl" => targets::acl,
        other => panic!("no fuzz target {other}"),
    }
}

/// Every file in `dir`, sorted by name; none if `dir` does not exist.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Runs `input` through `target`; on a panic, saves the input and fails
/// with where it is and its first bytes.
fn run_saving(target: &str, name: &str, input: &[u8]) {
    let run = target_fn(target);
    if panic::catch_unwind(AssertUnwindSafe(|| run(input))).is_err() {
        let dir = root().join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{target}-{name}"));
        std::fs::write(&path, input).unwrap();
        let shown: Vec<String> = input.iter().take(64).map(|b| format!("{b:02x}")).collect();
        panic!(
            "fuzz target {target} panicked on {} ({} bytes: {} ...)",
            path.display(),
            input.len(),
            shown.join(" ")
        );
    }
}

#[test]
fn the_seed_corpus_is_current() {
    let write = std::env::var_os("SOL_WRITE_SEEDS").is_some_and(|v| v == "1");
    for target in TARGETS {
        let dir = root().join("fuzz/corpus-seeds").join(target);
        let built = seeds(target);
        assert!(!built.is_empty(), "no seeds for {target}");
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &built {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let on_disk = files(&dir);
        let names: Vec<String> = on_disk
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut want: Vec<&str> = built.iter().map(|(n, _)| *n).collect();
        want.sort();
        assert_eq!(
            names, want,
            "fuzz/corpus-seeds/{target} is stale: SOL_WRITE_SEEDS=1 cargo test --test fuzz_corpus"
        );
        for (name, bytes) in &built {
            let file = std::fs::read(dir.join(name)).unwrap();
            assert!(
                &file == bytes,
                "fuzz/corpus-seeds/{target}/{name} is stale: SOL_WRITE_SEEDS=1 cargo test --test fuzz_corpus"
            );
        }
    }
}

/// Seeds and kept crashes, through every target.
#[test]
fn seeds_and_kept_crashes_replay_cleanly() {
    let mut ran = 0;
    for target in TARGETS {
        for (name, bytes) in seeds(target) {
            run_saving(target, name, &bytes);
            ran += 1;
        }
        let kept = root().join("tests/fixtures/fuzz").join(target);
        for (path, bytes) in files(&kept) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            run_saving(target, &name, &bytes);
            ran += 1;
        }
    }
    assert!(ran >= TARGETS.len());
}

/// One random change to `input`, sometimes spliced with `other`.
fn mutate(rng: &mut XorShift, input: &mut Vec<u8>, other: &[u8]) {
    // Values that sit on boundaries the decoder and parsers check.
    const INTERESTING: [u8; 12] = [
        0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x10, 0x30, 0x82, 0xC0, b'/', b'#',
    ];
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.byte();
        }
        3 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                input.insert(i, rng.byte());
            }
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            input.drain(i..i + n);
        }
        5 if !other.is_empty() => {
            // Splice: a piece of another seed at a random place.
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(64));
            let at = rng.below(len + 1);
            input.splice(at..at, other[from..from + n].iter().copied());
        }
        6 if len > 0 => {
            // Repeat a piece: packets in a row, long strings.
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(32));
            let piece: Vec<u8> = input[from..from + n].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, piece);
        }
        _ if len > 1 => {
            input.truncate(rng.below(len));
        }
        _ => input.push(rng.byte()),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A few thousand mutated seeds through `target`, within a time budget so
/// that a slow (debug, loaded) machine still finishes in seconds.
fn mutation_loop(target: &str) {
    let seed = env_u64("SOL_FUZZ_SEED", 0x5017);
    let iterations = env_u64("SOL_FUZZ_ITERATIONS", 20_000);
    let budget = if std::env::var_os("SOL_FUZZ_ITERATIONS").is_some() {
        Duration::MAX
    } else {
        Duration::from_secs(4)
    };
    let corpus: Vec<Vec<u8>> = seeds(target).into_iter().map(|(_, b)| b).collect();
    let mut rng = XorShift::new(seed ^ target.len() as u64);
    let start = Instant::now();
    let mut ran = 0u64;
    for n in 0..iterations {
        if start.elapsed() > budget {
            break;
        }
        let mut input = corpus[rng.below(corpus.len())].clone();
        let other = &corpus[rng.below(corpus.len())];
        for _ in 0..1 + rng.below(6) {
            mutate(&mut rng, &mut input, other);
        }
        run_saving(target, &format!("{seed}-{n}"), &input);
        ran += 1;
    }
    println!("{target}: {ran} mutated inputs in {:?}", start.elapsed());
    assert!(ran >= 100, "only {ran} inputs ran");
}

#[test]
fn mutated_decode_inputs() {
    mutation_loop("decode");
}

#[test]
fn mutated_session_inputs() {
    mutation_loop("session");
}

#[test]
fn mutated_config_inputs() {
    mutation_loop("config");
}

#[test]
fn mutated_passwd_inputs() {
    mutation_loop("passwd");
}

#[test]
fn mutated_acl_inputs() {
    mutation_loop("acl");
}
