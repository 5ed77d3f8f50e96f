//! Length-prefixed postcard frames, as the session and transfer protocols carry them.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes. The length is
//! checked against the message type's limit *before* anything is allocated, and the
//! payload goes through [`orien_protocol::wire::decode`] (canonical, validated).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use orien_protocol::wire::{self, Message};

/// Reads one frame of a `T`.
pub(crate) async fn read_frame<T: Message, R: AsyncRead + Unpin + Send>(
    io: &mut R,
) -> io::Result<T> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > T::MAX_ENCODED_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} frame of {len} bytes exceeds {}",
                T::KIND,
                T::MAX_ENCODED_LEN
            ),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    wire::decode::<T>(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes one frame of `value` (the stream stays open).
pub(crate) async fn write_frame<T: Message, W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    value: &T,
) -> io::Result<()> {
    let bytes = wire::encode(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use orien_protocol::{SessionRequest, ToolName};

    #[tokio::test]
    async fn frames_round_trip() {
        let request = SessionRequest::ListOffers {
            tool: Some(ToolName::new("wc").unwrap()),
        };
        let mut buf = Cursor::new(Vec::new());
        write_frame(&mut buf, &request).await.unwrap();
        let mut reader = Cursor::new(buf.into_inner());
        assert_eq!(
            read_frame::<SessionRequest, _>(&mut reader).await.unwrap(),
            request
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let mut frame = u32::MAX.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 16]);
        let err = read_frame::<SessionRequest, _>(&mut Cursor::new(frame))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn garbage_is_invalid_data() {
        let mut frame = 3u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<SessionRequest, _>(&mut Cursor::new(frame))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
