//! The hub replicas' Service, played on loopback: one address the agents dial, each new
//! connection passed to the next replica in turn (as kube-proxy spreads connections over a
//! Service's endpoints), skipping a replica that refuses the connection. It knows nothing of
//! leadership: a follower answers the agent "not the leader" and the agent dials again, which
//! is what a Service in front of the chart's replicas does too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, info_span};

/// Serves until dropped.
#[derive(Debug)]
pub struct Front {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// Listens on `addr` (port 0: any free port) and spreads connections over `backends`.
    pub async fn start(addr: SocketAddr, backends: Vec<SocketAddr>) -> std::io::Result<Front> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let next = Arc::new(AtomicUsize::new(0));
        let backends: Arc<[SocketAddr]> = backends.into();
        let task = tokio::spawn(
            async move {
                loop {
                    let Ok((client, from)) = listener.accept().await else {
                        continue;
                    };
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    let backends = backends.clone();
                    tokio::spawn(
                        async move {
                            if let Some(mut backend) = connect(&backends, first).await {
                                let mut client = client;
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                            }
                        }
                        .instrument(info_span!("connection", %from)),
                    );
                }
            }
            .instrument(info_span!("front", %addr)),
        );
        Ok(Front { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first backend, from `first` on in turn, that accepts a connection.
async fn connect(backends: &[SocketAddr], first: usize) -> Option<TcpStream> {
    for i in 0..backends.len() {
        let to = backends[(first + i) % backends.len()];
        match TcpStream::connect(to).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Err(e) => debug!(%to, error = %e, "replica refused the connection; trying the next"),
        }
    }
    debug!("no replica accepts connections");
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with its own name.
    async fn named(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        (addr, task)
    }

    async fn answer(front: SocketAddr) -> String {
        let mut s = TcpStream::connect(front).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn connections_go_round_and_skip_a_replica_that_is_down() {
        let (a, a_task) = named("a").await;
        let (b, _b_task) = named("b").await;
        let front = Front::start("127.0.0.1:0".parse().unwrap(), vec![a, b])
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(answer(front.addr()).await);
        }
        assert_eq!(seen, ["a", "b", "a", "b"]);
        // a is gone (its port refuses): every connection reaches b.
        a_task.abort();
        let _ = a_task.await;
        for _ in 0..3 {
            assert_eq!(answer(front.addr()).await, "b");
        }
    }
}
