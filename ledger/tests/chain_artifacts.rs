//! The committed contract artifacts match their sources, and the EIP-712 constants are
//! pinned: a change to either is a protocol change that must be deliberate.
//!
//! Each artifact in `ledger/contracts/out` carries solc's metadata, which records the
//! keccak256 of every source file that went into it. This test recomputes those hashes
//! from the files on disk (our sources and the pinned OpenZeppelin ones in node_modules).
//! `node ledger/contracts/build.js --check`, run by scripts/test, recompiles and compares
//! the bytecode as well.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod chain_support;

use std::path::{Path, PathBuf};

use alloy::primitives::keccak256;
use chain_support::World;
use orien_ledger::chain::{VOUCHER_TYPE, VoucherDomain, voucher_type_hash};
use orien_protocol::EvmAddress;

const ARTIFACTS: [&str; 3] = ["OrienEscrow", "MockUSDC", "ReentrantToken"];

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
}

fn source_path(name: &str) -> PathBuf {
    if name.starts_with("src/") {
        contracts_dir().join(name)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../node_modules")
            .join(name)
    }
}

#[test]
fn artifacts_record_the_hashes_of_the_current_sources() {
    let mut covered = Vec::new();
    for name in ARTIFACTS {
        let path = contracts_dir().join("out").join(format!("{name}.json"));
        let artifact: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(artifact["contractName"], name);
        let metadata: serde_json::Value =
            serde_json::from_str(artifact["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(
            metadata["compiler"]["version"]
                .as_str()
                .unwrap()
                .split('+')
                .next(),
            Some("0.8.30")
        );
        assert_eq!(metadata["settings"]["optimizer"]["enabled"], true);
        assert_eq!(metadata["settings"]["optimizer"]["runs"], 20000);
        let sources = metadata["sources"].as_object().unwrap();
        for (source, entry) in sources {
            let file = source_path(source);
            let content = std::fs::read(&file).unwrap_or_else(|e| {
                panic!(
                    "{} ({e}): run scripts/test or `npm ci` at the repository root",
                    file.display()
                )
            });
            assert_eq!(
                entry["keccak256"].as_str().unwrap(),
                format!("0x{}", hex::encode(keccak256(&content))),
                "{source} changed since {name}.json was built: run `node ledger/contracts/build.js`"
            );
            if source.starts_with("src/") {
                covered.push(source.clone());
            }
        }
        assert!(artifact["bytecode"].as_str().unwrap().len() > 2);
    }
    // Every Solidity file of ours is part of some artifact.
    for entry in std::fs::read_dir(contracts_dir().join("src")).unwrap() {
        let name = format!("src/{}", entry.unwrap().file_name().to_string_lossy());
        assert!(
            covered.contains(&name),
            "{name} is in no artifact: add it to build.js"
        );
    }
}

#[test]
fn voucher_type_hash_is_pinned() {
    assert_eq!(VOUCHER_TYPE, "Voucher(bytes32 laneId,uint128 cumulative)");
    assert_eq!(
        hex::encode(voucher_type_hash()),
        "115be1313d1a9a06d6dff95ad7882bdfea92e907f06101dddabfaae9ef104f83"
    );
}

#[test]
fn domain_separator_is_pinned() {
    let escrow: EvmAddress = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
        .parse()
        .unwrap();
    assert_eq!(
        hex::encode(VoucherDomain::new(31337, escrow).separator()),
        "d07e5614635cfecf64b664eaa7daeb28ff03202d948a87266a34ec7d14d223bb"
    );
}

#[tokio::test]
async fn contract_uses_the_pinned_type_hash_domain_and_lane_ids() {
    let world = World::start().await;
    assert_eq!(
        world.escrow.voucher_type_hash().await.unwrap(),
        voucher_type_hash()
    );
    assert_eq!(
        world.escrow.domain_separator().await.unwrap(),
        world.escrow.domain().separator()
    );
    // The lane id the client computes is the one the contract opens.
    let provider = world.actor(0).await;
    let renter = world.actor(1_000_000).await;
    let funded = renter
        .escrow
        .fund(provider.address(), orien_protocol::Usdc::from_micros(1_000))
        .await
        .unwrap();
    assert_eq!(
        funded.lane,
        world.escrow.lane_id(renter.address(), provider.address())
    );
}
