//! `sektorbro healthcheck`: asks the gateway this configuration describes for `/healthz` on its
//! own address, for a container's HEALTHCHECK (the runtime image has no curl or shell).
//! Exit code 0: healthy; 1: not answering or not healthy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;

/// Ask `/healthz` of the gateway configured by `config` (and the environment), on loopback.
pub fn run(config: Option<&Path>, timeout: Duration) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let tls = !config.server.tls.cert_file.is_empty();
    let url = health_url(&config.server.listen, tls)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // The gateway's own certificate names its public host, not the loopback address asked
        // here; nothing but "ok" is read from the answer.
        .danger_accept_invalid_certs(tls)
        .build()
        .context("the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(client.get(&url).send()) {
        Ok(answer) if answer.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(answer) => {
            eprintln!("{url} answered {}", answer.status());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `/healthz` on the listen address, with an unspecified address (0.0.0.0, ::) asked on
/// loopback.
fn health_url(listen: &str, tls: bool) -> anyhow::Result<String> {
    let mut addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("server.listen {listen:?} is not HOST:PORT"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{addr}/healthz"))
}

#[cfg(test)]
mod tests {
    use super::health_url;

    #[test]
    fn the_listen_address_is_asked_on_loopback() {
        assert_eq!(
            health_url("0.0.0.0:8080", false).unwrap(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            health_url("[::]:8443", true).unwrap(),
            "https://[::1]:8443/healthz"
        );
        assert_eq!(
            health_url("10.0.0.5:80", false).unwrap(),
            "http://10.0.0.5:80/healthz"
        );
        assert!(health_url("gateway:80", false).is_err());
    }
}
