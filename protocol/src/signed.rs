//! Signed messages: `domain tag ‖ postcard bytes`, signed with the node's ed25519 key.
//!
//! The signing bytes of a payload of type `T` are
//!
//! ```text
//! len(T::DOMAIN) as u8 ‖ T::DOMAIN ‖ postcard(T)
//! ```
//!
//! The domain tag names the type and its version (`orien/receipt/v1`), so a signature
//! over one kind of message never verifies as another; the length prefix keeps one tag
//! from being a prefix of another. Verification is strict ed25519 (no small-order keys,
//! canonical `s` only), and a payload is only handed out after its signature verified.

use std::fmt;
use std::marker::PhantomData;

use ed25519_dalek::{Signer as _, SigningKey};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::bytes;
use crate::error::{EncodeError, InvalidMessage, VerifyError};
use crate::ids::NodeId;
use crate::wire::{self, Message};

/// A payload type that is signed. Its [`DOMAIN`](SignedPayload::DOMAIN) separates its
/// signatures from every other type's.
pub trait SignedPayload: Message {
    /// Domain tag: `orien/<kind>/v<version>`, at most 255 bytes.
    const DOMAIN: &'static str;

    /// The party the payload itself names as its author, if any. [`Signed::verify`]
    /// refuses a payload whose named author is not its signer.
    fn author(&self) -> Option<&NodeId> {
        None
    }
}

/// Bytes of an envelope beyond its payload: signer (32), signature (64), length varint (≤ 5).
pub const ENVELOPE_OVERHEAD: usize = 32 + 64 + 5;

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", hex::encode(self.0))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes::serialize(&self.0, "", serializer)
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes::deserialize::<D, 64>("ed25519 signature", "", deserializer).map(Self)
    }
}

/// A node's ed25519 identity key: it signs offers, receipts and acks, and is the node's
/// libp2p identity. `Debug` never prints the secret.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        // Without an OS random source no key can be made safely; fail loudly.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut secret).expect("the operating system's random source is unavailable");
        Self::from_secret_bytes(secret)
    }

    /// The key with the given 32-byte secret (seed).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32-byte secret, for storing in a 0600 key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// This key's node id (its public key).
    pub fn node_id(&self) -> NodeId {
        // A public key derived from a signing key is always a valid point.
        #[allow(clippy::expect_used)]
        NodeId::from_public_key_bytes(self.signing.verifying_key().to_bytes())
            .expect("derived public key is a valid point")
    }

    /// The same key as a libp2p identity keypair.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        // Any 32 bytes are a valid ed25519 secret.
        #[allow(clippy::expect_used)]
        libp2p_identity::Keypair::ed25519_from_bytes(self.secret_bytes())
            .expect("32 bytes are a valid ed25519 secret")
    }

    /// Signs `value`.
    pub fn sign<T: SignedPayload>(&self, value: &T) -> Result<Signed<T>, EncodeError> {
        Signed::sign(value, self)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

/// A payload of type `T`, its signer and signature, exactly as transmitted.
///
/// The payload bytes are kept as received, so hashes and re-transmissions are
/// byte-identical. The payload can only be read through [`Signed::verify`].
pub struct Signed<T> {
    signer: NodeId,
    signature: SignatureBytes,
    payload: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Self {
            signer: self.signer,
            signature: self.signature,
            payload: self.payload.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.signer == other.signer
            && self.signature == other.signature
            && self.payload == other.payload
    }
}

impl<T> Eq for Signed<T> {}

impl<T: SignedPayload> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("domain", &T::DOMAIN)
            .field("signer", &self.signer)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl<T: SignedPayload> Signed<T> {
    /// Encodes and signs `value`.
    pub fn sign(value: &T, key: &NodeKey) -> Result<Self, EncodeError> {
        let payload = wire::encode(value)?;
        let signature = key.signing.sign(&signing_bytes(T::DOMAIN, &payload));
        Ok(Self {
            signer: key.node_id(),
            signature: SignatureBytes(signature.to_bytes()),
            payload,
            _type: PhantomData,
        })
    }

    /// Checks the signature (strict ed25519), then decodes and validates the payload.
    pub fn verify(&self) -> Result<T, VerifyError> {
        let bad = || VerifyError::BadSignature {
            kind: T::KIND,
            signer: self.signer.to_string(),
        };
        let key = self.signer.verifying_key().map_err(|_| bad())?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.signing_bytes(), &signature)
            .map_err(|_| bad())?;
        let value = wire::decode::<T>(&self.payload)?;
        if let Some(author) = value.author()
            && author != &self.signer
        {
            return Err(VerifyError::WrongSigner {
                kind: T::KIND,
                expected: author.to_string(),
                actual: self.signer.to_string(),
            });
        }
        Ok(value)
    }

    /// Like [`verify`](Self::verify), and also requires that `expected` signed it.
    pub fn verify_from(&self, expected: &NodeId) -> Result<T, VerifyError> {
        if &self.signer != expected {
            return Err(VerifyError::WrongSigner {
                kind: T::KIND,
                expected: expected.to_string(),
                actual: self.signer.to_string(),
            });
        }
        self.verify()
    }

    /// Who claims to have signed (only meaningful after [`verify`](Self::verify)).
    pub fn signer(&self) -> &NodeId {
        &self.signer
    }

    /// The raw signature.
    pub fn signature(&self) -> &SignatureBytes {
        &self.signature
    }

    /// The payload exactly as signed (postcard of `T`).
    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload
    }

    /// The bytes the signature covers: `len(tag) ‖ tag ‖ payload`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(T::DOMAIN, &self.payload)
    }

    /// SHA-256 of the signing bytes: the identity of this signed content.
    pub fn content_hash(&self) -> [u8; 32] {
        Sha256::digest(self.signing_bytes()).into()
    }

    /// The envelope as bytes, for the wire or the disk.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        wire::encode(self)
    }

    /// Reads an envelope from untrusted bytes (the signature is not checked yet).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::error::DecodeError> {
        wire::decode(bytes)
    }
}

fn signing_bytes(domain: &str, payload: &[u8]) -> Vec<u8> {
    let tag = domain.as_bytes();
    let tag_len = u8::try_from(tag.len()).unwrap_or(u8::MAX);
    let mut bytes = Vec::with_capacity(1 + tag.len() + payload.len());
    bytes.push(tag_len);
    bytes.extend_from_slice(&tag[..usize::from(tag_len)]);
    bytes.extend_from_slice(payload);
    bytes
}

/// The serialized form of [`Signed`].
#[derive(Serialize, Deserialize)]
struct Envelope {
    signer: NodeId,
    signature: SignatureBytes,
    #[serde(deserialize_with = "bytes::deserialize_var")]
    payload: Vec<u8>,
}

impl<T> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct EnvelopeRef<'a> {
            signer: &'a NodeId,
            signature: &'a SignatureBytes,
            #[serde(serialize_with = "bytes::serialize_var")]
            payload: &'a [u8],
        }
        EnvelopeRef {
            signer: &self.signer,
            signature: &self.signature,
            payload: &self.payload,
        }
        .serialize(serializer)
    }
}

impl<'de, T: SignedPayload> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let envelope = Envelope::deserialize(deserializer)?;
        if envelope.payload.len() > T::MAX_ENCODED_LEN {
            return Err(D::Error::custom(format!(
                "{} payload of {} bytes exceeds {}",
                T::KIND,
                envelope.payload.len(),
                T::MAX_ENCODED_LEN
            )));
        }
        Ok(Self {
            signer: envelope.signer,
            signature: envelope.signature,
            payload: envelope.payload,
            _type: PhantomData,
        })
    }
}

impl<T: SignedPayload> Message for Signed<T> {
    const KIND: &'static str = T::KIND;
    const MAX_ENCODED_LEN: usize = T::MAX_ENCODED_LEN + ENVELOPE_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.payload.len() > T::MAX_ENCODED_LEN {
            return Err(InvalidMessage::new(
                "payload",
                "larger than the payload type allows",
            ));
        }
        Ok(())
    }
}
