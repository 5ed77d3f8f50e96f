//! Property tests over whole sessions on real on-disk stores: for any sequence of usage
//! events and crashes, the provider's and the renter's ledgers agree and conserve
//! money, no balance goes negative, and the postings sum to `Split::of(final amount)`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use orien_ledger::Account;
use orien_ledger::receipts::Tolerance;
use orien_protocol::{Pricing, Split, Usdc};
use proptest::prelude::*;
use support::sim::Sim;

#[derive(Debug, Clone)]
enum Event {
    Advance(u64),
    Exec { ms: u64, cpu: u64 },
    Poll,
    ProviderCrash,
    RenterCrash,
    RenterCrashBeforeAck,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0u64..12_000).prop_map(Event::Advance),
        3 => (0u64..5_000, 0u64..5_000).prop_map(|(ms, cpu)| Event::Exec { ms, cpu }),
        3 => Just(Event::Poll),
        1 => Just(Event::ProviderCrash),
        1 => Just(Event::RenterCrash),
        1 => Just(Event::RenterCrashBeforeAck),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledgers_agree_and_conserve_money_whatever_the_events_and_crashes(
        events in proptest::collection::vec(event(), 1..40),
        session_price in 0u64..200_000,
        exec_price in 0u64..2_000_000,
        budget in 1u64..3_000_000,
    ) {
        let pricing = Pricing { session_per_minute: Usdc::from_micros(session_price), exec_per_minute: Usdc::from_micros(exec_price), artefact_per_gib: Usdc::ZERO };
        let mut sim = Sim::new(pricing, Usdc::from_micros(budget), Tolerance::default());
        for e in events {
            match e {
                Event::Advance(ms) => sim.advance(ms),
                Event::Exec { ms, cpu } => prop_assert!(sim.exec(ms, cpu)),
                Event::Poll => prop_assert!(sim.poll()),
                Event::ProviderCrash => sim.provider.crash(&sim.clock),
                Event::RenterCrash => sim.renter.crash(&sim.clock),
                Event::RenterCrashBeforeAck => {
                    sim.advance(1);
                    let reading = sim.provider_meter.current();
                    prop_assert!(sim.exchange(reading, true));
                }
            }
        }
        prop_assert!(sim.close());

        // Same dual-signed chain, same balances on both sides.
        prop_assert_eq!(sim.issuer.chain(), sim.countersigner.chain());
        let (p, r) = (&sim.provider.store, &sim.renter.store);
        let chain_p: Vec<_> = p.receipts(&sim.session).unwrap().into_iter().map(|s| s.acked).collect();
        let chain_r: Vec<_> = r.receipts(&sim.session).unwrap().into_iter().map(|s| s.acked).collect();
        prop_assert_eq!(&chain_p, &chain_r);
        prop_assert_eq!(chain_p.as_slice(), sim.issuer.chain());
        prop_assert_eq!(p.balances().unwrap(), r.balances().unwrap());

        // Conservation (full scan), no negative balance, and the split of the final total.
        p.verify().unwrap();
        r.verify().unwrap();
        for (account, balance) in p.balances().unwrap() {
            prop_assert!(balance.net(&account) >= 0, "{} is negative", account);
        }
        let total = p.session_totals(&sim.session).unwrap().amount;
        prop_assert!(total <= Usdc::from_micros(budget));
        let split = Split::of(total);
        let lane = p.session(&sim.session).unwrap().unwrap().lane();
        let net = |a: Account| p.balance(&a).unwrap().net(&a);
        prop_assert_eq!(net(Account::Lane(lane)), i128::from(total.micros()));
        prop_assert_eq!(net(Account::Earnings(lane)), i128::from(split.provider().micros()));
        prop_assert_eq!(net(Account::ProtocolFee), i128::from(split.fee().micros()));
        prop_assert_eq!(net(Account::Reserve), i128::from(split.reserve().micros()));
    }
}
