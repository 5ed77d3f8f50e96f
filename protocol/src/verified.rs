//! [`Verified`]: a signed value whose check this node has done, so the code it is handed
//! to need not do it again. Signatures are checked once per node on their way in.

use std::fmt;

use crate::error::{EncodeError, VerifyError};
use crate::ids::NodeId;
use crate::signed::{NodeKey, Signed, SignedPayload};

/// A [`Signed`] envelope whose signature (strict ed25519) and payload were checked, with
/// its decoded content. Only [`Signed::into_verified`], [`Signed::into_verified_from`]
/// and [`NodeKey::sign_verified`] (a node's own signature over a value it encoded) make
/// one, so holding a `Verified` is proof that the check ran.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified<T: SignedPayload> {
    signed: Signed<T>,
    value: T,
}

impl<T: SignedPayload> Verified<T> {
    /// The envelope, exactly as received or made.
    pub fn signed(&self) -> &Signed<T> {
        &self.signed
    }

    /// The checked content.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Who signed it (checked).
    pub fn signer(&self) -> &NodeId {
        self.signed.signer()
    }

    /// The envelope and its content.
    pub fn into_parts(self) -> (Signed<T>, T) {
        (self.signed, self.value)
    }
}

impl<T: SignedPayload> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("domain", &T::DOMAIN)
            .field("signer", self.signer())
            .finish_non_exhaustive()
    }
}

impl<T: SignedPayload> Signed<T> {
    /// Checks the envelope ([`Signed::verify`]) and keeps it with its content.
    pub fn into_verified(self) -> Result<Verified<T>, VerifyError> {
        let value = self.verify()?;
        Ok(Verified {
            signed: self,
            value,
        })
    }

    /// Like [`into_verified`](Self::into_verified), and also requires that `expected`
    /// signed it.
    pub fn into_verified_from(self, expected: &NodeId) -> Result<Verified<T>, VerifyError> {
        let value = self.verify_from(expected)?;
        Ok(Verified {
            signed: self,
            value,
        })
    }
}

impl<T: SignedPayload> Signed<T> {
    /// What the payload claims, decoded without checking the signature: only to route a
    /// message to the code that checks it, or to log; nothing it says is trusted.
    pub fn claimed(&self) -> Result<T, crate::error::DecodeError> {
        crate::wire::decode(self.payload_bytes())
    }
}

impl NodeKey {
    /// Signs `value`: this node's own signature over a value it encoded needs no check.
    pub fn sign_verified<T: SignedPayload + Clone>(
        &self,
        value: &T,
    ) -> Result<Verified<T>, EncodeError> {
        Ok(Verified {
            signed: self.sign(value)?,
            value: value.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{ReceiptAck, ReceiptHash, SessionId};

    use super::*;

    fn ack() -> ReceiptAck {
        ReceiptAck {
            session: SessionId::from_bytes([3; 16]),
            seq: 7,
            receipt: ReceiptHash::from_bytes([9; 32]),
            voucher: None,
        }
    }

    #[test]
    fn only_a_good_signature_by_the_expected_signer_becomes_verified() {
        let key = NodeKey::generate();
        let signed = key.sign(&ack()).unwrap();
        let verified = signed.clone().into_verified().unwrap();
        assert_eq!(verified.value(), &ack());
        assert_eq!(verified.signer(), &key.node_id());
        assert_eq!(verified.signed(), &signed);
        let other = NodeKey::generate().node_id();
        assert!(signed.clone().into_verified_from(&other).is_err());
        assert!(signed.into_verified_from(&key.node_id()).is_ok());
    }

    #[test]
    fn a_tampered_envelope_never_becomes_verified() {
        let key = NodeKey::generate();
        let mut bytes = key.sign(&ack()).unwrap().to_bytes().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = Signed::<ReceiptAck>::from_bytes(&bytes).unwrap();
        assert!(tampered.into_verified().is_err());
    }

    #[test]
    fn a_nodes_own_signature_is_verified_as_made() {
        let key = NodeKey::generate();
        let own = key.sign_verified(&ack()).unwrap();
        assert_eq!(own.signed().clone().into_verified().unwrap(), own);
    }
}
