//! Bytes on the wire of `/orien/session/1`: one length-prefixed postcard frame per
//! request and per response.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of canonical postcard,
//! read with its type's limit checked before anything is allocated (`network::frame`,
//! shared with [`crate::transfer`]); the writer closes its side after its one frame.

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use orien_protocol::{SessionRequest, SessionResponse};

use super::frame::{read_frame, write_frame};

/// The request-response codec of the session protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionCodec;

impl libp2p::request_response::Codec for SessionCodec {
    type Protocol = StreamProtocol;
    type Request = SessionRequest;
    type Response = SessionResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SessionRequest> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SessionResponse> {
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SessionRequest,
    ) -> io::Result<()> {
        write_frame(io, &req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SessionResponse,
    ) -> io::Result<()> {
        write_frame(io, &res).await?;
        io.close().await
    }
}
