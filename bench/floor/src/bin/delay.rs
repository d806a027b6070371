//! A TCP proxy that delays every chunk a client sends by a fixed time, as
//! a server in an AWS region answers a host outside it: the benchmark puts
//! one in front of each local server to measure the contenders where a
//! call takes 20 ms.
//!
//!     widget-bench-delay UPSTREAM_URL DELAY_MS
//!
//! prints `http://127.0.0.1:PORT` on its first line, then serves until
//! killed. Answers pass straight through; each connection keeps its order.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, upstream, delay_ms] = args.as_slice() else {
        anyhow::bail!("usage: widget-bench-delay UPSTREAM_URL DELAY_MS");
    };
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let delay = Duration::from_millis(delay_ms.parse()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                let _ = serve(client, server, delay).await;
            }
        });
    }
}

/// Forwards `client` to `server`, each chunk `delay` after it arrived, and
/// the answers back as they come. Chunks are delayed side by side, as a
/// network's latency delays packets: one delayed after the other, a large
/// request (a batch call's body in several reads) would take a multiple
/// of the delay, and the time of a call would grow with its batch.
async fn serve(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let arriving = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0 {
                // The end goes through after the chunks before it.
                return Ok::<_, std::io::Error>(());
            }
            let _ = chunks.send((Instant::now() + delay, buffer[..n].to_vec()));
        }
    };
    let forwarding = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            server_write.write_all(&chunk).await?;
        }
        server_write.shutdown().await
    };
    let answers = tokio::io::copy(&mut server_read, &mut client_write);
    let (arrived, forwarded, _) = tokio::join!(arriving, forwarding, answers);
    arrived.and(forwarded)
}
