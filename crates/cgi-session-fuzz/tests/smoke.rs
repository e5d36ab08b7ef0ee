//! The bounded fuzz smoke run: every committed corpus input (seeds and past crashes) of every
//! target, then random and mutated inputs for a fixed number of cases. Long coverage-guided
//! runs are `scripts/fuzz.sh`.

use std::path::PathBuf;

use cgi_session_fuzz::TARGETS;
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            inputs.push(std::fs::read(entry.path()).expect("corpus file reads"));
        }
    }
    inputs
}

#[test]
fn every_target_has_seeds_and_survives_its_corpus() {
    for (name, target) in TARGETS {
        let inputs = corpus(name);
        assert!(!inputs.is_empty(), "fuzz/corpus/{name} has no seeds");
        for input in inputs {
            target(&input);
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    TARGETS.iter().flat_map(|(name, _)| corpus(name)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn mutated_seeds(pick in any::<prop::sample::Index>(),
                     edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let seeds = seeds();
        let mut data = seeds[pick.index(seeds.len())].clone();
        for (at, byte, op) in edits {
            let i = if data.is_empty() { 0 } else { at.index(data.len()) };
            match op {
                0 if !data.is_empty() => data[i] = byte,
                1 => data.insert(i, byte),
                _ if !data.is_empty() => { data.remove(i); }
                _ => data.push(byte),
            }
        }
        for (_, target) in TARGETS {
            target(&data);
        }
    }
}
