//! The peer guard: what peers did that only a hostile peer does, counted with decay,
//! and the bans it earns.
//!
//! Only [`Abuse`] counts — things an honest node never sends, whatever crashed or raced:
//! a request about a session the peer was never part of, an open in another node's
//! name, a frame that does not decode, output that breaks the stream's own rules. A
//! request about a session that *ended* (or that this node forgot in a restart) is not
//! abuse, nor is a connection that drops mid-request. Counts decay (one point forgiven
//! per [`GuardConfig::forgive_every`]), so rare accidents never add up to a ban; a peer
//! that reaches [`GuardConfig::limit`] is banned for [`GuardConfig::ban`], doubled for
//! each earlier ban up to [`GuardConfig::max_ban`], and let back in when it ends.
//!
//! No I/O and no clock of its own: every call takes the time, so a test drives it by
//! hand.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

/// Something only a hostile peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Abuse {
    /// A request about a session this node never had with the peer.
    ForeignSession,
    /// An open that names another node as the renter.
    Impersonation,
    /// A session-protocol frame that does not decode (or is over its size limit).
    UndecodableFrame,
    /// Output that breaks its own stream: an empty chunk, a gap or a repeat.
    BrokenOutput,
}

impl Abuse {
    /// What it is, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ForeignSession => "foreign_session",
            Self::Impersonation => "impersonation",
            Self::UndecodableFrame => "undecodable_frame",
            Self::BrokenOutput => "broken_output",
        }
    }
}

/// How the guard counts and bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Points at which a peer is banned.
    pub limit: u32,
    /// One point is forgiven per this much time without abuse.
    pub forgive_every: Duration,
    /// The first ban's length.
    pub ban: Duration,
    /// The longest ban.
    pub max_ban: Duration,
    /// Most peers remembered (the least suspicious are forgotten first).
    pub max_peers: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            limit: 5,
            forgive_every: Duration::from_secs(60),
            ban: Duration::from_secs(600),
            max_ban: Duration::from_secs(24 * 3600),
            max_peers: 10_000,
        }
    }
}

/// What counting one abuse did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; the peer now has this many points.
    Counted(u32),
    /// The peer is banned from now until `until` (monotonic).
    Banned {
        /// When the ban ends.
        until: Duration,
    },
    /// The peer was banned already.
    AlreadyBanned,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    points: u32,
    /// When the points were last brought up to date.
    at: Duration,
    /// Bans so far (each doubles the next).
    bans: u32,
    banned_until: Option<Duration>,
}

/// Per-peer abuse counts and bans.
#[derive(Debug, Default)]
pub struct PeerGuard {
    config: GuardConfig,
    peers: HashMap<PeerId, Record>,
}

impl PeerGuard {
    /// A guard with `config`.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
        }
    }

    /// Counts one abuse by `peer` at `now`.
    pub fn record(&mut self, peer: PeerId, abuse: Abuse, now: Duration) -> Verdict {
        if self.is_banned(&peer, now) {
            return Verdict::AlreadyBanned;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers {
            self.forget_one(now);
        }
        let config = self.config;
        let record = self.peers.entry(peer).or_insert(Record {
            points: 0,
            at: now,
            bans: 0,
            banned_until: None,
        });
        decay(record, &config, now);
        record.points += 1;
        tracing::debug!(%peer, abuse = abuse.as_str(), points = record.points, "abuse counted");
        if record.points < config.limit {
            return Verdict::Counted(record.points);
        }
        let factor = 1u32.checked_shl(record.bans).unwrap_or(u32::MAX);
        let length = config.ban.saturating_mul(factor).min(config.max_ban);
        let until = now + length;
        record.bans = record.bans.saturating_add(1);
        record.points = 0;
        record.banned_until = Some(until);
        Verdict::Banned { until }
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerId, now: Duration) -> bool {
        self.peers
            .get(peer)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Points `peer` has at `now`.
    pub fn points(&self, peer: &PeerId, now: Duration) -> u32 {
        self.peers.get(peer).map_or(0, |r| {
            let mut r = *r;
            decay(&mut r, &self.config, now);
            r.points
        })
    }

    /// Ends the bans that are over at `now` and returns those peers (to let back into
    /// gossip). Peers with nothing left against them are forgotten, but a peer's ban
    /// count is kept while it has one.
    pub fn expire(&mut self, now: Duration) -> Vec<PeerId> {
        let config = self.config;
        let mut ended = Vec::new();
        self.peers.retain(|peer, record| {
            if record.banned_until.is_some_and(|until| now >= until) {
                record.banned_until = None;
                record.at = now;
                ended.push(*peer);
            }
            decay(record, &config, now);
            record.points > 0 || record.banned_until.is_some() || record.bans > 0
        });
        ended
    }

    /// Peers banned at `now`.
    pub fn banned(&self, now: Duration) -> usize {
        self.peers
            .values()
            .filter(|r| r.banned_until.is_some_and(|until| now < until))
            .count()
    }

    fn forget_one(&mut self, now: Duration) {
        let config = self.config;
        let least = self
            .peers
            .iter()
            .filter(|(_, r)| r.banned_until.is_none_or(|until| now >= until))
            .min_by_key(|(_, r)| {
                let mut r = **r;
                decay(&mut r, &config, now);
                (r.points, r.bans)
            })
            .map(|(peer, _)| *peer);
        if let Some(peer) = least {
            self.peers.remove(&peer);
        }
    }
}

/// Forgives one point per `forgive_every` since the record was last brought up to date.
fn decay(record: &mut Record, config: &GuardConfig, now: Duration) {
    let every = config.forgive_every.as_millis().max(1);
    let elapsed = now.saturating_sub(record.at).as_millis();
    let forgiven = u32::try_from(elapsed / every).unwrap_or(u32::MAX);
    if forgiven > 0 {
        record.points = record.points.saturating_sub(forgiven);
        let used =
            Duration::from_millis(u64::try_from(u128::from(forgiven) * every).unwrap_or(u64::MAX));
        record.at = (record.at + used).min(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn guard() -> PeerGuard {
        PeerGuard::new(GuardConfig::default())
    }

    #[test]
    fn a_peer_is_banned_at_the_limit_and_let_back_in_when_the_ban_ends() {
        let mut g = guard();
        let peer = PeerId::random();
        for n in 1..5 {
            assert_eq!(
                g.record(peer, Abuse::ForeignSession, S),
                Verdict::Counted(n)
            );
        }
        assert_eq!(
            g.record(peer, Abuse::ForeignSession, S),
            Verdict::Banned { until: S + 600 * S }
        );
        assert!(g.is_banned(&peer, 300 * S));
        assert_eq!(
            g.record(peer, Abuse::Impersonation, 300 * S),
            Verdict::AlreadyBanned
        );
        assert_eq!(g.expire(600 * S), vec![]);
        assert_eq!(g.expire(601 * S), vec![peer]);
        assert!(!g.is_banned(&peer, 601 * S));
    }

    #[test]
    fn rare_accidents_are_forgiven_before_they_add_up() {
        let mut g = guard();
        let peer = PeerId::random();
        // One abuse every 90 s: forgiven faster than it accrues.
        for i in 0..100u64 {
            let verdict = g.record(peer, Abuse::UndecodableFrame, 90 * S * i as u32);
            assert!(
                matches!(verdict, Verdict::Counted(n) if n <= 2),
                "{verdict:?}"
            );
        }
        assert_eq!(g.points(&peer, 90 * S * 100 + 600 * S), 0);
    }

    #[test]
    fn every_later_ban_lasts_twice_as_long_up_to_the_longest() {
        let mut g = guard();
        let peer = PeerId::random();
        let mut now = S;
        let mut lengths = Vec::new();
        for _ in 0..10 {
            let until = loop {
                if let Verdict::Banned { until } = g.record(peer, Abuse::ForeignSession, now) {
                    break until;
                }
            };
            lengths.push((until - now).as_secs());
            now = until;
            g.expire(now);
        }
        assert_eq!(&lengths[..4], &[600, 1_200, 2_400, 4_800]);
        assert_eq!(*lengths.last().unwrap(), 24 * 3600);
    }

    #[test]
    fn memory_stays_bounded_and_banned_peers_are_kept() {
        let mut g = PeerGuard::new(GuardConfig {
            max_peers: 16,
            ..GuardConfig::default()
        });
        let hostile = PeerId::random();
        for _ in 0..5 {
            g.record(hostile, Abuse::ForeignSession, S);
        }
        for _ in 0..1_000 {
            g.record(PeerId::random(), Abuse::UndecodableFrame, S);
        }
        assert!(g.peers.len() <= 16);
        assert!(g.is_banned(&hostile, 2 * S));
    }
}
