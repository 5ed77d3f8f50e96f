//! [`ReusableMemory`]: libp2p's in-process transport, giving its listening ports back
//! when it is dropped, so that a node stopped with its swarm can start again on its own
//! address (churn: `market/churn.rs`).
//!
//! libp2p-core's `MemoryTransport` (0.44) frees a port only in `remove_listener`: its
//! listener has no `Drop` (although a comment says it has), so a swarm dropped while it
//! listens keeps its `/memory/<port>` registered for the rest of the process, and a
//! node started again on that address fails with "port already occupied". A node
//! never removes its listeners before it stops (a process that exits needs not), so
//! this wrapper does it when the transport goes.

use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::Multiaddr;
use libp2p::core::transport::memory::{Channel, MemoryTransportError};
use libp2p::core::transport::{
    DialOpts, ListenerId, MemoryTransport, Transport, TransportError, TransportEvent,
};

/// A [`MemoryTransport`] that stops listening on its ports when dropped.
#[derive(Default)]
pub struct ReusableMemory {
    inner: MemoryTransport,
    listeners: Vec<ListenerId>,
}

impl Transport for ReusableMemory {
    type Output = Channel<Vec<u8>>;
    type Error = MemoryTransportError;
    type ListenerUpgrade = <MemoryTransport as Transport>::ListenerUpgrade;
    type Dial = <MemoryTransport as Transport>::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)?;
        self.listeners.push(id);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.listeners.retain(|&l| l != id);
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.inner.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

impl Drop for ReusableMemory {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.listeners) {
            self.inner.remove_listener(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(transport: &mut impl Transport, port: u64) -> bool {
        let addr: Multiaddr = format!("/memory/{port}").parse().expect("an address");
        transport.listen_on(ListenerId::next(), addr).is_ok()
    }

    #[test]
    fn a_port_is_free_again_once_its_transport_is_dropped() {
        let port = crate::memory_ports(1);
        let mut first = ReusableMemory::default();
        assert!(listen(&mut first, port));
        assert!(!listen(&mut ReusableMemory::default(), port), "taken");
        drop(first);
        assert!(listen(&mut ReusableMemory::default(), port), "free again");
    }

    #[test]
    fn libp2p_s_own_memory_transport_keeps_its_ports_after_it_is_dropped() {
        // Why the wrapper exists; when this fails, libp2p frees them itself and the
        // wrapper can go.
        let port = crate::memory_ports(1);
        let mut plain = MemoryTransport::default();
        assert!(listen(&mut plain, port));
        drop(plain);
        assert!(!listen(&mut MemoryTransport::default(), port));
    }
}
