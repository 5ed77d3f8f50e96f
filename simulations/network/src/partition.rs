//! Partitions: part of the network cut off from the rest for a while
//! (`network.partitions`), on the links of [`crate::link`].
//!
//! [`Cuts`] knows which partitions are active; which side of partition `i` a node is on
//! is [`orien_sim::model::side`], so network mode cuts off the same nodes as model
//! mode for a seed. Every connection end is wrapped in a [`Severable`] that consults
//! the cuts: when a partition begins, each connection between its two sides is
//! *reset* (reads and writes fail with `ConnectionReset`, and keep failing after the
//! heal, as a reset TCP connection does), and while it lasts a dial across it fails at
//! once, as to an unreachable route. After the heal, new connections work again; nothing
//! re-opens the old ones but the nodes themselves.
//!
//! Why reset rather than stall: a stalled TCP connection would hold what was written
//! during the cut and deliver it after the heal (Linux retransmits for some fifteen
//! minutes before it gives up), but whether and when the node notices depends on
//! timeouts that are not the protocol's (libp2p's ping no longer closes connections,
//! yamux has none), and a minute of gossip arriving at the heal would blur what the
//! partition did. A reset is the usual end of a connection whose route is gone (a home
//! router's restart, a NAT's state lost, keepalive giving up), and is the harder case
//! for the session protocol: every receipt in flight is lost. The session machines
//! decide the rest on their own timers: a provider stops an ack timeout after the last
//! ack it received, a renter closes its side when its provider has been silent for its
//! grace.
//!
//! Only the dialling end of a connection knows whom it dialled (`/memory/<port>`,
//! node `port - base`); a listening end sees the dialler's ephemeral port only. So
//! only dialling ends are severed: the dialler's node then drops the connection, its
//! memory channel closes, and the listening end reads the end of the stream once the
//! bytes already on the link are delivered. Both ends are gone within one link
//! latency, and nothing written during the cut crosses it.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use orien_sim::scenario::Partition;
use tokio::time::Instant;

/// The partitions of a run, switched on and off in simulated time, and what they cut.
#[derive(Debug)]
pub struct Cuts {
    seed: u64,
    /// Each partition's share of nodes cut off.
    fractions: Vec<f64>,
    /// Node `i` listens on `/memory/<base + i>`.
    base: u64,
    nodes: usize,
    state: Mutex<State>,
    /// Ends registered so far (their ids).
    ends: AtomicU64,
    connections_cut: AtomicU64,
    dials_cut: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// When each partition began and healed (`None`: not yet).
    windows: Vec<(Option<Instant>, Option<Instant>)>,
    /// Dialling ends waiting on their connection, to be woken when a partition begins.
    waiting: HashMap<u64, Waker>,
}

/// Which partition changes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Begin(usize),
    Heal(usize),
}

impl Cuts {
    /// The cuts of `partitions` (with `seed` deciding the sides) among `nodes` nodes
    /// listening on consecutive memory ports from `base`; none is active yet.
    pub fn new(seed: u64, partitions: &[Partition], base: u64, nodes: usize) -> Self {
        Self {
            seed,
            fractions: partitions.iter().map(|p| p.fraction.0).collect(),
            base,
            nodes,
            state: Mutex::new(State {
                windows: vec![(None, None); partitions.len()],
                waiting: HashMap::new(),
            }),
            ends: AtomicU64::new(0),
            connections_cut: AtomicU64::new(0),
            dials_cut: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `node` is on the cut-off side of partition `index`.
    pub fn cut_off(&self, index: usize, node: usize) -> bool {
        orien_sim::model::side(self.seed, index, node, self.fractions[index])
    }

    /// Whether partition `index` puts `a` and `b` on opposite sides.
    pub fn splits(&self, index: usize, a: usize, b: usize) -> bool {
        self.cut_off(index, a) != self.cut_off(index, b)
    }

    /// Whether an active partition separates `a` from `b` now.
    pub fn separates(&self, a: usize, b: usize) -> bool {
        let state = self.state();
        state
            .windows
            .iter()
            .enumerate()
            .any(|(i, &(began, healed))| {
                began.is_some() && healed.is_none() && self.splits(i, a, b)
            })
    }

    /// When partition `index` began and healed, as far as the run got.
    pub fn window(&self, index: usize) -> (Option<Instant>, Option<Instant>) {
        self.state().windows[index]
    }

    /// How many partitions there are.
    pub fn len(&self) -> usize {
        self.fractions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fractions.is_empty()
    }

    /// Connections reset by a partition's beginning, so far.
    pub fn connections_cut(&self) -> u64 {
        self.connections_cut.load(Ordering::Relaxed)
    }

    /// Dials across an active partition, so far.
    pub fn dials_cut(&self) -> u64 {
        self.dials_cut.load(Ordering::Relaxed)
    }

    /// Partition `index` begins now: every connection across it is reset.
    pub fn begin(&self, index: usize) {
        self.change(Change::Begin(index));
    }

    /// Partition `index` heals now: new connections across it work again.
    pub fn heal(&self, index: usize) {
        self.change(Change::Heal(index));
    }

    fn change(&self, change: Change) {
        let waiting: Vec<Waker> = {
            let mut state = self.state();
            match change {
                Change::Begin(i) => state.windows[i].0 = Some(Instant::now()),
                Change::Heal(i) => state.windows[i].1 = Some(Instant::now()),
            }
            state.waiting.drain().map(|(_, waker)| waker).collect()
        };
        // Each end looks again; those across the cut fail.
        for waker in waiting {
            waker.wake();
        }
    }

    /// Plays the partitions: each begins at its `start_minute` and heals at its
    /// `end_minute`, counted from `opened` (when the market opened, as model mode counts
    /// from its start).
    pub async fn play(self: Arc<Self>, opened: Instant, partitions: Vec<Partition>) {
        let minutes = |m: f64| opened + Duration::from_secs_f64(m * 60.0);
        let mut changes: Vec<(Instant, Change)> = partitions
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                [
                    (minutes(p.start_minute.0), Change::Begin(i)),
                    (minutes(p.end_minute.0), Change::Heal(i)),
                ]
            })
            .collect();
        changes.sort_by_key(|&(at, change)| (at, matches!(change, Change::Begin(_))));
        for (at, change) in changes {
            tokio::time::sleep_until(at).await;
            self.change(change);
        }
    }

    /// The node a connection end reached, when it dialled: `/memory/<base + node>`.
    fn dialled(&self, endpoint: &ConnectedPoint) -> Option<usize> {
        let ConnectedPoint::Dialer { address, .. } = endpoint else {
            return None;
        };
        let port = address.iter().find_map(|p| match p {
            Protocol::Memory(port) => Some(port),
            _ => None,
        })?;
        let node = usize::try_from(port.checked_sub(self.base)?).ok()?;
        (node < self.nodes).then_some(node)
    }

    /// Wraps node `local`'s end `conn` of a connection (`endpoint` as libp2p's transport
    /// says it) so that partitions cut it. A dial across an active partition fails at
    /// its first read or write.
    pub fn end<C>(
        self: &Arc<Self>,
        conn: C,
        local: usize,
        endpoint: &ConnectedPoint,
    ) -> Severable<C> {
        let ends = if self.is_empty() {
            None
        } else {
            self.dialled(endpoint).map(|remote| (local, remote))
        };
        let severed = ends.is_some_and(|(a, b)| self.separates(a, b));
        if severed {
            self.dials_cut.fetch_add(1, Ordering::Relaxed);
        }
        Severable {
            inner: conn,
            cuts: Arc::clone(self),
            ends,
            id: self.ends.fetch_add(1, Ordering::Relaxed),
            severed,
        }
    }
}

/// A connection end that a partition can reset.
pub struct Severable<C> {
    inner: C,
    cuts: Arc<Cuts>,
    /// This end's node and the node it dialled; `None` when it does not know (a
    /// listening end) or there are no partitions.
    ends: Option<(usize, usize)>,
    id: u64,
    severed: bool,
}

impl<C> Severable<C> {
    /// Fails once a partition separates the two ends (and for good after that).
    fn check(&mut self) -> io::Result<()> {
        if !self.severed
            && let Some((a, b)) = self.ends
            && self.cuts.separates(a, b)
        {
            self.severed = true;
            self.cuts.connections_cut.fetch_add(1, Ordering::Relaxed);
        }
        if self.severed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "a partition cut the link",
            ));
        }
        Ok(())
    }

    /// A pending end is woken when a partition begins, to find out whether it is cut.
    fn wait<T>(&self, cx: &Context<'_>, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() && self.ends.is_some() {
            self.cuts
                .state()
                .waiting
                .insert(self.id, cx.waker().clone());
        }
        poll
    }
}

impl<C> Drop for Severable<C> {
    fn drop(&mut self) {
        if self.ends.is_some() {
            self.cuts.state().waiting.remove(&self.id);
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Severable<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.wait(cx, poll)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Severable<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wait(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.wait(cx, poll)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing a reset connection has nothing left to do.
        if self.severed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::AsyncReadExt;
    use libp2p::Multiaddr;
    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;
    use orien_sim::scenario::{Fraction, NonNegative};

    use super::*;

    const BASE: u64 = 7_000;
    const NODES: usize = 40;

    /// An end whose bytes never come: pending until a cut wakes it.
    struct Quiet;

    impl AsyncRead for Quiet {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    fn partition(start: f64, end: f64, fraction: f64) -> Partition {
        Partition {
            start_minute: NonNegative(start),
            end_minute: NonNegative(end),
            fraction: Fraction(fraction),
        }
    }

    fn dialled(node: usize) -> ConnectedPoint {
        let address: Multiaddr = format!("/memory/{}", BASE + node as u64)
            .parse()
            .expect("a memory address");
        ConnectedPoint::Dialer {
            address,
            role_override: Endpoint::Dialer,
            port_use: PortUse::New,
        }
    }

    fn listened() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: format!("/memory/{BASE}").parse().expect("an address"),
            send_back_addr: "/memory/123456789".parse().expect("an address"),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    }

    /// Nodes `a`, `b`, `c`: `b` across partition 0 from `a`, `c` on `a`'s side.
    fn three(cuts: &Cuts) -> (usize, usize, usize) {
        let a = 0;
        let b = (1..NODES)
            .find(|&n| cuts.splits(0, a, n))
            .expect("a node across");
        let c = (1..NODES)
            .find(|&n| !cuts.splits(0, a, n))
            .expect("a node beside");
        (a, b, c)
    }

    #[test]
    fn a_partition_resets_the_connections_across_it_and_refuses_dials_until_it_heals() {
        runtime().block_on(async {
            let cuts = Arc::new(Cuts::new(5, &[partition(1.0, 2.0, 0.3)], BASE, NODES));
            let (a, b, c) = three(&cuts);
            let mut across = cuts.end(Quiet, a, &dialled(b));
            let mut beside = cuts.end(Quiet, a, &dialled(c));
            // The end that was dialled does not know whom by; it is cut when the
            // dialler drops the connection.
            let mut dialled_end = cuts.end(Quiet, b, &listened());
            let reading = tokio::spawn(async move {
                let mut buf = [0u8; 8];
                across.read(&mut buf).await
            });
            tokio::task::yield_now().await;
            assert!(!reading.is_finished(), "no partition yet");
            cuts.begin(0);
            let error = reading
                .await
                .expect("the read task ends")
                .expect_err("a partition began");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(cuts.connections_cut(), 1);
            let mut buf = [0u8; 8];
            let beside_read = futures::poll!(std::pin::pin!(beside.read(&mut buf)));
            assert!(beside_read.is_pending(), "the same side still talks");
            let listening = futures::poll!(std::pin::pin!(dialled_end.read(&mut buf)));
            assert!(
                listening.is_pending(),
                "a listening end is not severed itself"
            );

            let mut dial = cuts.end(futures::io::Cursor::new(vec![1u8]), a, &dialled(b));
            assert_eq!(cuts.dials_cut(), 1);
            let refused = dial
                .read(&mut buf)
                .await
                .expect_err("a dial across the cut");
            assert_eq!(refused.kind(), io::ErrorKind::ConnectionReset);

            cuts.heal(0);
            let mut redial = cuts.end(futures::io::Cursor::new(vec![1u8]), a, &dialled(b));
            assert_eq!(redial.read(&mut buf).await.expect("healed"), 1);
            // A reset connection stays reset.
            assert!(dial.read(&mut buf).await.is_err());
            assert_eq!((cuts.connections_cut(), cuts.dials_cut()), (1, 1));
        });
    }

    #[test]
    fn partitions_begin_and_heal_at_their_minutes_from_the_market_opening() {
        runtime().block_on(async {
            let partitions = vec![partition(1.0, 2.5, 0.3), partition(0.5, 1.0, 0.5)];
            let cuts = Arc::new(Cuts::new(5, &partitions, BASE, NODES));
            let opened = Instant::now();
            tokio::spawn(Arc::clone(&cuts).play(opened, partitions));
            tokio::time::sleep(Duration::from_secs(45)).await;
            assert_eq!(
                cuts.window(1),
                (Some(opened + Duration::from_secs(30)), None)
            );
            assert_eq!(cuts.window(0), (None, None));
            tokio::time::sleep(Duration::from_secs(120)).await;
            assert_eq!(
                cuts.window(0),
                (
                    Some(opened + Duration::from_secs(60)),
                    Some(opened + Duration::from_secs(150))
                )
            );
            assert_eq!(cuts.window(1).1, Some(opened + Duration::from_secs(60)));
        });
    }

    #[test]
    fn a_partition_cuts_off_about_its_fraction_of_the_nodes() {
        let cuts = Cuts::new(9, &[partition(0.0, 1.0, 0.3)], BASE, 2_000);
        let off = (0..2_000).filter(|&n| cuts.cut_off(0, n)).count();
        assert!((540..=660).contains(&off), "{off} of 2000");
    }
}
