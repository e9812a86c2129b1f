//! Reaching the SMTP server: directly (DNS, then the first address that
//! answers), or through the proxy the settings name.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carteiro_core::delivery::{Failure, Stage};
use carteiro_core::settings::SmtpServer;
use tokio::net::TcpStream;

use super::proxy;
use super::transcript::{Transcript, within};

/// A TCP stream to `server`, recording each step in `log`.
pub async fn reach(server: &SmtpServer, timeout: Duration, log: &mut Transcript) -> Result<TcpStream, Failure> {
    if let Some(settings) = &server.proxy {
        let started = Instant::now();
        let endpoint = proxy::endpoint(settings, &server.host, server.port);
        match endpoint {
            Ok(Some(endpoint)) => return proxy::tunnel(&endpoint, &server.host, server.port, timeout, log).await,
            Ok(None) => log.record(Stage::Proxy, started, &Ok(()), |()| {
                format!(
                    "no system proxy applies to {} (none set, or NO_PROXY covers it): connecting directly",
                    server.host
                )
            }),
            Err(failure) => {
                log.record(Stage::Proxy, started, &Err::<(), _>(failure.clone()), |()| String::new());
                return Err(failure);
            }
        }
    }
    direct(server, timeout, log).await
}

async fn direct(server: &SmtpServer, timeout: Duration, log: &mut Transcript) -> Result<TcpStream, Failure> {
    let started = Instant::now();
    let addresses = within(timeout, Stage::Dns, lookup(server.host.as_str(), server.port.get(), Stage::Dns)).await;
    log.record(Stage::Dns, started, &addresses, |a| {
        let list: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
        format!("{} → {}", server.host, list.join(", "))
    });
    let addresses = addresses?;

    let started = Instant::now();
    let tcp = connect_any(&addresses, timeout, Stage::Connect).await;
    log.record(Stage::Connect, started, &tcp, |(_, addr)| format!("connected to {addr}"));
    tcp.map(|(tcp, _)| tcp)
}

/// The addresses of `host`, a failure at `stage` when it has none.
pub async fn lookup(host: &str, port: u16, stage: Stage) -> Result<Vec<SocketAddr>, Failure> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::Network { stage, detail: format!("cannot resolve {host}: {e}") })?
        .collect();
    if found.is_empty() {
        return Err(Failure::Network { stage, detail: format!("{host} has no address") });
    }
    Ok(found)
}

/// The first of `addresses` that accepts a connection within `timeout`,
/// each given an equal share of it: an address that silently drops packets
/// (often the IPv6 one) must not use up the time of the next.
pub async fn connect_any(
    addresses: &[SocketAddr],
    timeout: Duration,
    stage: Stage,
) -> Result<(TcpStream, SocketAddr), Failure> {
    let share = timeout / u32::try_from(addresses.len().max(1)).unwrap_or(u32::MAX);
    let mut refused = None;
    for addr in addresses {
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, *addr));
            }
            Ok(Err(e)) => refused = Some(format!("{addr}: {e}")),
            Err(_) => {}
        }
    }
    // An address that said no tells more than one that said nothing.
    Err(refused.map_or(Failure::Timeout { stage }, |detail| Failure::Network { stage, detail }))
}
