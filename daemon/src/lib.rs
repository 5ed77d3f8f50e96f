//! # orien-daemon
//!
//! The ORIEN node: identity, the libp2p stack, the offer book and (as they land) the
//! session manager, wired together. [`Node`] is the library form that tests and
//! simulations start in-process; the `orien-node` binary runs one for a user.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use orien_daemon::{Node, NodeConfig};
//! use orien_protocol::{NodeKey, SystemClock, ToolName};
//!
//! let config = NodeConfig {
//!     listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
//!     bootstrap: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".parse()?],
//!     ..NodeConfig::default()
//! };
//! let node = Node::start(NodeKey::generate(), config, Arc::new(SystemClock::new())).await?;
//! for entry in node.find_tool(ToolName::new("sha256sum")?).await? {
//!     println!("{} offers {} at {}/min", entry.offer.provider, entry.offer.tool, entry.offer.pricing.exec_per_minute);
//! }
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod daemon;
pub mod faults;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod network;
pub mod node;
pub mod offer_book;
mod own_offers;
mod paging;
pub mod payments;
pub mod peer_guard;
pub mod profile_book;
pub mod reputation;
pub mod session;
pub mod transfer;

pub use daemon::{Assembled, Daemon, DaemonConfig, DaemonError, DaemonParts};
pub use faults::{Fault, LinkFaults, Point};
pub use metrics::Metrics;
pub use net::{Answer, Inbound, Net, NetError};
pub use network::{BoxedTransport, CustomTransport, TransportKind};
pub use node::{
    Faults, Node, NodeConfig, NodeError, NodeStats, OfferEvent, OfferSpec, ProfileText,
};
pub use offer_book::{BookEntry, OfferBook, OfferBookLimits, OfferQuery};
pub use session::{
    ExecSnapshot, ExecView, LedgerPayments, PaymentChoice, RentedSession, SessionConfig,
    SessionError, SessionServices, Sessions,
};
pub use transfer::{ByteStream, Download, Remote, Stored, TransferError, Transfers};
