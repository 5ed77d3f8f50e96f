//! A bounded, stable-toolchain fuzz run over every decoder of untrusted bytes.
//!
//! `protocol/fuzz` holds the coverage-guided cargo-fuzz targets; this test drives the
//! same entry points ([`orien_protocol::fuzzing::DECODERS`]) with random bytes and
//! with mutations of valid encodings, so every `scripts/test` run fuzzes a little.
//! `ORIEN_FUZZ_ITERS` sets the iterations per decoder (default 2,000).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use orien_protocol::fuzzing::DECODERS;
use orien_protocol::wire;

/// xorshift64*: deterministic, so a failure reproduces from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        provider_key()
            .sign(&sample_offer())
            .unwrap()
            .to_bytes()
            .unwrap(),
        provider_key()
            .sign(&sample_receipt())
            .unwrap()
            .to_bytes()
            .unwrap(),
        renter_key()
            .sign(&sample_ack())
            .unwrap()
            .to_bytes()
            .unwrap(),
        provider_key()
            .sign(&sample_result())
            .unwrap()
            .to_bytes()
            .unwrap(),
        provider_key()
            .sign(&sample_profile())
            .unwrap()
            .to_bytes()
            .unwrap(),
        renter_key()
            .sign(&sample_attestation())
            .unwrap()
            .to_bytes()
            .unwrap(),
        wire::encode(&sample_open()).unwrap(),
        wire::encode(&sample_accepted()).unwrap(),
        wire::encode(&sample_rejected()).unwrap(),
        wire::encode(&sample_exec()).unwrap(),
        wire::encode(&sample_output()).unwrap(),
        wire::encode(&sample_exit()).unwrap(),
        wire::encode(&sample_close()).unwrap(),
        wire::encode(&sample_list_offers()).unwrap(),
        wire::encode(&sample_offers_response()).unwrap(),
        wire::encode(&sample_events()).unwrap(),
        wire::encode(&sample_receipt_request()).unwrap(),
        wire::encode(&sample_ack_response()).unwrap(),
        b"12.345678 USDC".to_vec(),
        b"sha256sum".to_vec(),
    ]
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    match rng.below(5) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        2 if !input.is_empty() => {
            input.truncate(rng.below(input.len()));
        }
        3 => {
            let i = rng.below(input.len() + 1);
            input.insert(i, rng.next() as u8);
        }
        _ => {
            let len = rng.below(64);
            input.extend((0..len).map(|_| rng.next() as u8));
        }
    }
}

#[test]
fn every_decoder_survives_random_and_mutated_input() {
    let iterations: usize = std::env::var("ORIEN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seeds = seeds();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut runs = 0usize;
    for (name, decode) in DECODERS {
        for i in 0..iterations {
            let mut input = if i % 4 == 0 {
                (0..rng.below(256)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input);
            }
            decode(&input);
            runs += 1;
        }
        // The unmutated seeds decode through the same entry point.
        for seed in &seeds {
            decode(seed);
        }
        let _ = name;
    }
    assert_eq!(runs, DECODERS.len() * iterations);
}
