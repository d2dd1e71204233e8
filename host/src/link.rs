//! The host's link to the enclave: where it is reached and the byte stream
//! a connection gives.
//!
//! - The process backend: a Unix socket the enclave binds.
//! - The VM backend with the kernel's vhost-vsock: an `AF_VSOCK` connection
//!   to the guest's CID and the enclave's port.
//! - The VM backend without it (machines that lack `/dev/vhost-vsock`): the
//!   rust-vmm `vhost-device-vsock` daemon implements the VM's vsock device
//!   over vhost-user and exposes the host side as a Unix socket, on which a
//!   connection starts with `CONNECT <port>\n` and is answered `OK <port>\n`
//!   (the hybrid vsock protocol Firecracker introduced). The guest sees the
//!   same virtio vsock device either way.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

/// Where the enclave is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A Unix socket.
    Unix(PathBuf),
    /// A vsock port of a guest, through the kernel's vhost-vsock.
    Vsock {
        /// The guest's context ID.
        cid: u32,
        /// The enclave's port.
        port: u32,
    },
    /// A vsock port of a guest, through a vhost-user vsock daemon's Unix socket.
    HybridVsock {
        /// The daemon's host-side Unix socket.
        uds: PathBuf,
        /// The enclave's port.
        port: u32,
    },
}

/// Longest answer line of the hybrid vsock handshake.
const MAX_HANDSHAKE_LINE: usize = 64;

impl Link {
    /// Opens a connection to the enclave.
    pub async fn connect(&self) -> io::Result<LinkStream> {
        match self {
            Link::Unix(path) => UnixStream::connect(path).await.map(LinkStream::Unix),
            Link::Vsock { cid, port } => {
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                    .await
                    .map(LinkStream::Vsock)
            }
            Link::HybridVsock { uds, port } => {
                let mut stream = UnixStream::connect(uds).await?;
                stream
                    .write_all(format!("CONNECT {port}\n").as_bytes())
                    .await?;
                // Read the answer byte by byte: nothing after its newline may be consumed.
                let mut line = Vec::new();
                let mut reader = tokio::io::BufReader::with_capacity(1, &mut stream);
                while !line.ends_with(b"\n") {
                    if line.len() > MAX_HANDSHAKE_LINE
                        || reader.read_until(b'\n', &mut line).await? == 0
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!("vsock port {port}: the vhost-user vsock daemon closed the connection (nothing listens there yet)"),
                        ));
                    }
                }
                if !line.starts_with(b"OK ") {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!(
                            "vsock port {port}: expected \"OK <port>\" from the vhost-user vsock daemon, found {:?}",
                            String::from_utf8_lossy(&line)
                        ),
                    ));
                }
                Ok(LinkStream::Unix(stream))
            }
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Unix(path) => write!(f, "{}", path.display()),
            Link::Vsock { cid, port } => write!(f, "vsock {cid}:{port}"),
            Link::HybridVsock { uds, port } => write!(f, "vsock port {port} via {}", uds.display()),
        }
    }
}

/// A connection to the enclave.
#[derive(Debug)]
pub enum LinkStream {
    /// Over a Unix socket (also the hybrid vsock after its handshake).
    Unix(UnixStream),
    /// Over `AF_VSOCK`.
    Vsock(tokio_vsock::VsockStream),
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            LinkStream::Vsock(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            LinkStream::Vsock(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Unix(s) => Pin::new(s).poll_flush(cx),
            LinkStream::Vsock(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            LinkStream::Vsock(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A fake vhost-user vsock daemon: answers one handshake with `answer`, then echoes.
    async fn daemon(answer: &'static str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("vsock.sock");
        let listener = tokio::net::UnixListener::bind(&uds).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\n") {
                s.read_exact(&mut byte).await.unwrap();
                line.push(byte[0]);
            }
            assert_eq!(line, b"CONNECT 5000\n");
            if answer.is_empty() {
                return; // closes the connection
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
        });
        (dir, uds)
    }

    #[tokio::test]
    async fn hybrid_vsock_connects_after_the_handshake_and_keeps_every_byte() {
        let (_dir, uds) = daemon("OK 1073741824\nhello").await;
        let mut s = Link::HybridVsock { uds, port: 5000 }
            .connect()
            .await
            .unwrap();
        // Bytes right after the answer line belong to the stream.
        let mut first = [0u8; 5];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hello");
        s.write_all(b"frame").await.unwrap();
        let mut echo = [0u8; 5];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"frame");
    }

    #[tokio::test]
    async fn hybrid_vsock_refusals_say_what_the_daemon_answered() {
        let (_dir, uds) = daemon("NOPE\n").await;
        let e = Link::HybridVsock { uds, port: 5000 }
            .connect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("found \"NOPE\\n\""), "{e}");
        let (_dir, uds) = daemon("").await;
        let e = Link::HybridVsock { uds, port: 5000 }
            .connect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("closed the connection"), "{e}");
    }
}
