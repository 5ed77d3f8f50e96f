//! A link with latency: bytes written at one end are readable at the other one
//! `latency` later, on tokio's clock.
//!
//! Wraps each in-process connection (libp2p's `MemoryTransport`) before its upgrades,
//! so the security and multiplexing layers and every protocol above run over it
//! unchanged. The delay is applied where bytes are read: each chunk the inner
//! connection yields is held until `latency` after it arrived. The inner connection
//! is reliable and ordered, like TCP; a lost segment would cost TCP a retransmission,
//! which the scenario's loss adds as an extra delay on that chunk.
//!
//! A node's upload bandwidth ([`Uplink`], shared by all its connections) is applied
//! where bytes are written: a write is taken once its last byte would have left the
//! uplink, behind every byte the node wrote before, as a full send buffer holds the
//! writer back. tokio's timers tick in whole milliseconds, so a write waits only when the
//! uplink is more than a tick behind: a lone small message leaves at once (up to a
//! millisecond early), a burst is paced.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use orien_sim::rng::Rng;
use tokio::time::{Instant, Sleep};

/// The links of a simulated network: each end of a connection reads with a one-way
/// latency drawn around `latency` (± `jitter`, uniformly, once per connection end), and
/// a chunk's segment is lost with chance `loss`, costing a `retransmit` more.
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// Mean one-way latency.
    pub latency: Duration,
    /// Spread of a connection end's latency around the mean.
    pub jitter: Duration,
    /// Chance that a chunk's segment is lost and retransmitted.
    pub loss: f64,
    /// The retransmission's extra delay.
    pub retransmit: Duration,
    /// Decides every draw of the links.
    pub seed: u64,
    /// Each node's upload bandwidth, Mbit/s (`None`: unlimited).
    pub uplink_mbps: Option<f64>,
}

impl LinkModel {
    /// A node's uplink, for all its connection ends ([`Delayed::paced`]).
    pub fn uplink(&self) -> Option<Uplink> {
        self.uplink_mbps.map(Uplink::new)
    }

    /// The read side of the `n`-th connection end of node `node` over `conn`.
    pub fn end<C>(&self, conn: C, node: usize, n: u64) -> Delayed<C> {
        let stream = (node as u64) << 32 | n;
        let offset =
            (Rng::stream(self.seed, stream).unit() * 2.0 - 1.0) * self.jitter.as_secs_f64();
        let one_way = Duration::from_secs_f64((self.latency.as_secs_f64() + offset).max(0.0));
        Delayed::new(
            conn,
            one_way,
            (self.retransmit, self.loss),
            self.seed ^ stream,
        )
    }
}

/// A node's upload link: the bytes of all its connections leave one after another, at
/// its bandwidth.
#[derive(Debug, Clone)]
pub struct Uplink {
    per_byte: Duration,
    /// When the last byte written so far has left.
    free_at: Arc<Mutex<Instant>>,
}

impl Uplink {
    /// An uplink of `mbps` megabits a second.
    pub fn new(mbps: f64) -> Self {
        assert!(mbps > 0.0, "an uplink moves bytes");
        Self {
            per_byte: Duration::from_secs_f64(8.0 / (mbps * 1_000_000.0)),
            free_at: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Queues `bytes` behind what was written before; when their last byte has left.
    fn send(&self, bytes: usize) -> Instant {
        let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (*free_at).max(Instant::now());
        *free_at = start + self.per_byte * u32::try_from(bytes).unwrap_or(u32::MAX);
        *free_at
    }
}

/// How far behind an uplink may be before a write waits for it: a timer's tick.
const PACING_SLACK: Duration = Duration::from_millis(1);

/// Reads from the inner connection are held back by the link's latency; writes, by
/// the node's uplink when it has one.
pub struct Delayed<C> {
    inner: C,
    latency: Duration,
    /// Extra delay of a chunk whose segment was lost, and the chance of that.
    retransmit: (Duration, f64),
    draws: Rng,
    /// Chunks read from the inner connection, with when they may be delivered.
    queue: VecDeque<(Instant, Vec<u8>, usize)>,
    eof: bool,
    timer: Pin<Box<Sleep>>,
    uplink: Option<Uplink>,
    /// When the write being taken has left the uplink (reserved on its first poll).
    sent_at: Option<Instant>,
    /// Made on the first write that waits.
    write_timer: Option<Pin<Box<Sleep>>>,
}

thread_local! {
    /// Where reads from an inner connection land before they are copied into its queue:
    /// one buffer for every link of the thread, not 16 KiB held by each connection end
    /// (a thousand nodes keep tens of thousands of ends open).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

impl<C> Delayed<C> {
    /// `inner` with one-way `latency`; a chunk is delayed by a further `retransmit.0`
    /// with probability `retransmit.1` (drawn from `seed`).
    pub fn new(inner: C, latency: Duration, retransmit: (Duration, f64), seed: u64) -> Self {
        Self {
            inner,
            latency,
            retransmit,
            draws: Rng::new(seed),
            queue: VecDeque::new(),
            eof: false,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            uplink: None,
            sent_at: None,
            write_timer: None,
        }
    }

    /// Writes through `uplink`, shared with the node's other connections.
    #[must_use]
    pub fn paced(mut self, uplink: Uplink) -> Self {
        self.uplink = Some(uplink);
        self
    }

    fn lost(&mut self) -> bool {
        self.draws.chance(self.retransmit.1)
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Delayed<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Take in everything the inner connection has now, stamped with its due time.
        while !this.eof && this.queue.len() < 64 {
            let read = SCRATCH.with_borrow_mut(|scratch| {
                Pin::new(&mut this.inner)
                    .poll_read(cx, scratch)
                    .map_ok(|n| scratch[..n].to_vec())
            });
            match read {
                Poll::Ready(Ok(chunk)) if chunk.is_empty() => this.eof = true,
                Poll::Ready(Ok(chunk)) => {
                    let mut due = Instant::now() + this.latency;
                    if this.lost() {
                        due += this.retransmit.0;
                    }
                    // Ordered: never before the chunk ahead of it.
                    if let Some((last, _, _)) = this.queue.back() {
                        due = due.max(*last);
                    }
                    this.queue.push_back((due, chunk, 0));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let Some((due, chunk, offset)) = this.queue.front_mut() else {
                return if this.eof {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            if *due > Instant::now() {
                this.timer.as_mut().reset(*due);
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            let n = (chunk.len() - *offset).min(buf.len());
            buf[..n].copy_from_slice(&chunk[*offset..*offset + n]);
            *offset += n;
            if *offset == chunk.len() {
                this.queue.pop_front();
            }
            return Poll::Ready(Ok(n));
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Delayed<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(uplink) = &this.uplink {
            let sent_at = *this.sent_at.get_or_insert_with(|| uplink.send(buf.len()));
            if sent_at > Instant::now() + PACING_SLACK {
                let timer = this
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(sent_at)));
                timer.as_mut().reset(sent_at);
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if written.is_ready() {
            this.sent_at = None;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::AsyncReadExt;

    use super::*;

    /// A runtime on a paused clock, as the market's.
    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    }

    fn read_all(latency: Duration, retransmit: (Duration, f64)) -> (Vec<u8>, Duration) {
        paused().block_on(async {
            let inner = futures::io::Cursor::new(b"offer bytes".to_vec());
            let mut link = Delayed::new(inner, latency, retransmit, 1);
            let start = Instant::now();
            let mut bytes = Vec::new();
            link.read_to_end(&mut bytes).await.expect("reads");
            (bytes, start.elapsed())
        })
    }

    #[test]
    fn an_uplink_paces_a_nodes_writes_behind_one_another_and_lets_a_lone_small_one_go() {
        paused().block_on(async {
            use futures::AsyncWriteExt;
            // 8 Mbit/s: a microsecond a byte.
            let uplink = Uplink::new(8.0);
            let end = |uplink: &Uplink| {
                Delayed::new(
                    futures::io::Cursor::new(Vec::new()),
                    Duration::ZERO,
                    (Duration::ZERO, 0.0),
                    1,
                )
                .paced(uplink.clone())
            };
            let (mut a, mut b) = (end(&uplink), end(&uplink));
            let start = Instant::now();
            a.write_all(&[0; 500]).await.expect("writes");
            assert_eq!(
                start.elapsed(),
                Duration::ZERO,
                "half a millisecond: within a tick"
            );
            // 20 kB more through the other connection: behind the first 500 bytes.
            b.write_all(&[0; 20_000]).await.expect("writes");
            // tokio's timers tick in whole milliseconds.
            let took = start.elapsed();
            assert!(
                (Duration::from_micros(20_500)..=Duration::from_micros(21_500)).contains(&took),
                "{took:?}"
            );
            assert_eq!(b.inner.get_ref().len(), 20_000);
        });
    }

    #[test]
    fn bytes_arrive_one_latency_later_and_a_lost_segment_adds_its_retransmission() {
        let latency = Duration::from_millis(40);
        let (bytes, took) = read_all(latency, (Duration::from_millis(200), 0.0));
        assert_eq!(bytes, b"offer bytes");
        assert_eq!(took, latency);
        let (bytes, took) = read_all(latency, (Duration::from_millis(200), 1.0));
        assert_eq!(bytes, b"offer bytes");
        assert_eq!(took, Duration::from_millis(240));
    }
}
