//! 1 GiB through the Rust SDK both ways, from an `AsyncRead` into an
//! `AsyncWrite` and as a `Stream`, with the caller's and the daemon's
//! memory flat. Alone in its test binary: the process's RSS is measured.

mod common;

use common::Daemon;
use futures_util::StreamExt;
use sprites_client::{Client, CreateSpriteRequest, WriteOptions};
use sprites_test_support::rss_kib;
use tokio::io::{AsyncReadExt, AsyncWrite};

/// Counts and checks what it is given: every byte must be `b'x'`.
struct Check {
    total: u64,
    bad: bool,
}

impl AsyncWrite for Check {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.total += buf.len() as u64;
        self.bad |= buf.iter().any(|&b| b != b'x');
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streams_a_gib_with_flat_memory() {
    const SIZE: u64 = 1 << 30;
    let d = Daemon::start();
    let client = Client::new(&d.url, d.token.clone()).expect("client");
    client
        .create_sprite(&CreateSpriteRequest {
            name: "sdkbig".into(),
            ..Default::default()
        })
        .await
        .expect("create sprite");
    let fs = client.sprite("sdkbig").fs();
    let me = std::process::id();
    let daemon = d.pid().expect("daemon pid");
    let (me_before, daemon_before) = (rss_kib(me), rss_kib(daemon));

    let source = tokio::io::repeat(b'x').take(SIZE);
    let w = fs
        .write_from("/tmp/big", source, &WriteOptions::default())
        .await
        .expect("upload");
    assert_eq!(w.size, SIZE);
    let mut check = Check {
        total: 0,
        bad: false,
    };
    let n = fs.read_to("/tmp/big", &mut check).await.expect("download");
    assert_eq!((n, check.total, check.bad), (SIZE, SIZE, false));
    // The stream form too: chunks as they come, never the whole file.
    let mut stream = fs.read_stream("/tmp/big").await.expect("stream");
    assert_eq!(stream.len(), Some(SIZE));
    let mut seen = 0u64;
    let mut largest = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        largest = largest.max(chunk.len());
        seen += chunk.len() as u64;
    }
    assert_eq!(seen, SIZE);
    assert!(largest <= 4 << 20, "a chunk of {largest} bytes");
    let (me_after, daemon_after) = (rss_kib(me), rss_kib(daemon));
    eprintln!(
        "SDK 1 GiB up and down twice: test process RSS {me_before} -> {me_after} KiB, \
         daemon {daemon_before} -> {daemon_after} KiB"
    );
    assert!(
        me_after < me_before + 64 * 1024,
        "the SDK held the file: {me_before} -> {me_after} KiB"
    );
    assert!(
        daemon_after < daemon_before + 48 * 1024,
        "daemon {daemon_before} -> {daemon_after} KiB"
    );
}
