//! Real gossipsub swarms on the in-process network, in simulated time.

use std::time::{Duration, Instant};

use orien_sim::model::gossip;
use orien_sim::scenario::{Loss, Network, NonNegative};
use orien_sim_network::{PropagationConfig, propagation};

fn config(nodes: usize) -> PropagationConfig {
    PropagationConfig {
        nodes,
        dials: 4,
        latency: Duration::from_millis(40),
        jitter: Duration::ZERO,
        loss: 0.0,
        retransmit: Duration::from_millis(200),
        heartbeat: Duration::from_millis(700),
        warmup: Duration::from_secs(10),
        samples: 3,
        seed: 7,
    }
}

#[test]
fn offers_reach_every_swarm_in_whole_link_latencies_of_simulated_time() {
    let wall = Instant::now();
    let run = propagation(&config(40)).expect("the swarms run");
    let wall = wall.elapsed();
    assert_eq!(
        run.reached,
        vec![39, 39, 39],
        "every offer reaches every other swarm"
    );
    let ms: Vec<f64> = run
        .arrivals
        .iter()
        .map(|a| a.as_secs_f64() * 1_000.0)
        .collect();
    eprintln!(
        "arrivals (ms): {ms:?}; simulated {:?} in {wall:?}",
        run.simulated
    );
    // In simulated time work costs nothing: an offer pushed along the mesh arrives after
    // a whole number of 40 ms hops. (One recovered by gossip waits for a heartbeat, which
    // need not fall on that grid; with no loss that is rare.) In real time on a loaded
    // machine almost none would.
    assert!(
        run.arrivals.iter().all(|a| *a >= Duration::from_millis(40)),
        "{ms:?}"
    );
    let whole = run
        .arrivals
        .iter()
        .filter(|a| a.as_millis().is_multiple_of(40))
        .count();
    assert!(
        whole * 100 >= run.arrivals.len() * 95,
        "{whole} of {} arrivals in whole hops: {ms:?}",
        run.arrivals.len()
    );
    assert!(
        run.simulated >= Duration::from_secs(16),
        "warm-up and samples: {:?}",
        run.simulated
    );
}

fn percentile(mut ms: Vec<f64>, q: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    orien_sim::report::quantile(&ms, q)
}

#[test]
fn model_mode_predicts_real_gossipsub_propagation_within_a_quarter() {
    let config = PropagationConfig {
        jitter: Duration::from_millis(20),
        samples: 4,
        ..config(200)
    };
    let run = propagation(&config).expect("the swarms run");
    assert_eq!(run.reached, vec![199; 4]);
    let network: Vec<f64> = run.arrivals.iter().map(|a| a.as_secs_f64() * 1e3).collect();

    let model_network = Network {
        latency_ms: NonNegative(40.0),
        jitter_ms: NonNegative(20.0),
        loss: Loss(0.0),
        ..Network::default()
    };
    let model: Vec<f64> = gossip::calm_arrivals(200, 6, &model_network, 4, 7)
        .into_iter()
        .map(|us| us as f64 / 1e3)
        .collect();
    for q in [0.5, 0.99] {
        let (n, m) = (percentile(network.clone(), q), percentile(model.clone(), q));
        eprintln!("p{}: network {n:.0} ms, model {m:.0} ms", q * 100.0);
        assert!(
            (m - n).abs() <= n / 4.0,
            "p{}: model {m:.0} ms against network {n:.0} ms",
            q * 100.0
        );
    }
}
