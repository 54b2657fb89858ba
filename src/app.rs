//! Wiring: builds the storage, engine and HTTP server from a [`Config`]. The only place that
//! knows how the parts fit together.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context as _;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;

/// What loading the definitions found: each problem as a warning, notes about configured
/// packages as information, and one summary line.
fn log_load_report(v: &fhir_core::validation::Validator) {
    use fhir_core::validation::FindingKind;
    let configured: std::collections::HashSet<String> = v
        .defs
        .packages()
        .iter()
        .filter(|p| !p.embedded)
        .map(|p| p.id())
        .collect();
    let report = v.load_report();
    for f in &report.findings {
        match f.kind {
            FindingKind::Problem => tracing::warn!(
                package = %f.package,
                subject = %f.subject,
                "validation definition not loaded: {}",
                f.message
            ),
            FindingKind::Note if configured.contains(&f.package) => {
                tracing::info!(package = %f.package, "validation package: {}", f.message)
            }
            FindingKind::Note => {}
        }
    }
    tracing::info!(
        packages = report.packages.len(),
        problems = report.problems().count(),
        "validation definitions loaded"
    );
}

/// Open the database (migrating it) and build the shared state.
pub async fn build_state(config: Config) -> anyhow::Result<web::Data<AppState>> {
    let store = crate::store::open(
        &config.database.url,
        config.database.max_connections,
        crate::store::SqliteTuning {
            synchronous: &config.database.sqlite_synchronous,
            page_size: config.database.sqlite_page_size,
            direct_reads: config.database.sqlite_direct_reads,
            audit_sync_ms: config.audit.max_unsynced_ms,
        },
        config.database.statement_timeout_ms,
        &config.cache,
    )
    .await
    .with_context(|| format!("cannot open database {}", redact(&config.database.url)))?;
    let validator = if config.validation.packages.is_empty() {
        // The embedded packages are vetted by their tests, so strictness changes nothing here.
        fhir_core::validation::Validator::shared_embedded_allowing(
            &config.validation.allowed_extension_domains,
        )?
    } else {
        let sources = fhir_core::validation::Sources {
            embedded_igs: true,
            packages: config.validation.packages.iter().map(Into::into).collect(),
            strict: config.validation.strict,
            allowed_extension_domains: config.validation.allowed_extension_domains.clone(),
        };
        Arc::new(
            fhir_core::validation::Validator::load(&sources)
                .context("loading the validation packages")?,
        )
    };
    // Loading freed most of what it allocated; an idle gateway need not hold it.
    crate::alloc::release_free_memory();
    log_load_report(&validator);
    let load_problems = validator.load_report().problems().count() as i64;
    let policy = crate::engine::WritePolicy {
        validator,
        mode: config.validation.mode,
        required: config.validation.required.clone(),
    };
    for (rtype, urls) in &policy.required {
        for url in urls {
            if policy.validator.defs.profile(url).is_none() {
                anyhow::bail!(
                    "[validation.required] {rtype}: profile {url} is not in the loaded packages"
                );
            }
        }
    }
    let lookups = Arc::new(
        crate::lookup::Lookups::from_config(&config.lookups).context("configuring [lookups]")?,
    );
    let tenants = crate::engine::directory::Tenants::new(
        config
            .auth
            .clients
            .iter()
            .flat_map(|c| c.organizations.iter().cloned()),
    );
    let mut engine = Engine::new(store, config.search.clone())
        .with_validation(Arc::new(policy))
        .with_lookups(lookups.clone())
        .with_tenants(tenants);
    if config.cache.enabled {
        engine = engine.with_page_cache(&config.cache);
    }
    let engine = Arc::new(engine);
    // Report facts left stale (records stored before migration 0009, or written since by other
    // routes) are filled in once, in the background: a report rebuilds them meanwhile.
    let refresher = engine.clone();
    tokio::spawn(async move {
        match crate::report::stored::refresh_stale(&refresher).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "report facts filled in"),
            Err(e) => {
                tracing::warn!(error = ?e.issues.first().map(|i| &i.diagnostics), "filling in report facts failed")
            }
        }
    });
    let journal = config.audit.journal(&config.database.url);
    let auditor = crate::audit::Auditor::start(
        engine.clone(),
        &config.audit,
        &observer(&config),
        journal.as_deref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting the audit trail: {e}"))?;
    let forwarder =
        crate::forward::Forwarder::new(engine.clone(), &config.forwarding, lookups.clone())
            .context("configuring [forwarding]")?
            .with_auditor(auditor.clone());
    if config.database.url.starts_with("sqlite:") {
        forwarder
            .release_orphaned_leases()
            .await
            .map_err(|e| anyhow::anyhow!("releasing the outbox leases of a previous run: {e:?}"))?;
    }
    let auth = Arc::new(
        crate::auth::Authenticator::new(&config, lookups.clone()).context("configuring [auth]")?,
    );
    forwarder.start();
    let bulk = crate::bulk::Exporter::new(
        engine.clone(),
        auth.clone(),
        &config.bulk,
        Some(auditor.clone()),
    );
    if config.database.url.starts_with("sqlite:") {
        bulk.release_orphaned().await.map_err(|e| {
            anyhow::anyhow!(
                "giving back the export jobs of a previous run: {:?}",
                e.issues
            )
        })?;
    }
    bulk.start();
    // Each component registers its own series; /metrics renders them all.
    let mut metrics = Metrics::default();
    lookups.register_metrics(metrics.registry());
    forwarder.register_metrics(metrics.registry());
    auditor.register_metrics(metrics.registry());
    auth.register_metrics(metrics.registry());
    let limits = Arc::new(api::limits::RateLimits::new(&config.limits));
    limits.register_metrics(metrics.registry());
    crate::telemetry::register_metrics(metrics.registry());
    crate::engine::register_metrics(metrics.registry());
    // Constant after start: what the validation definitions could not load (see the log).
    let problems = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    problems.set(load_problems);
    metrics.registry().register(
        "sektorbro_validation_load_problems",
        "Definitions, files or expressions that could not be loaded at start",
        problems,
    );
    Ok(web::Data::new(AppState {
        engine,
        forwarder,
        auditor,
        auth,
        lookups,
        limits,
        bulk,
        metrics: Arc::new(metrics),
        config,
        started: fhir_core::fhir::instant(chrono::Utc::now().timestamp_millis()),
    }))
}

/// This gateway's name in AuditEvents: `audit.observer`, else `server.base_url`, else "sektorbro".
pub fn observer(config: &Config) -> String {
    [&config.audit.observer, &config.server.base_url]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or_else(|| "sektorbro".to_string(), |s| s.to_string())
}

/// The HTTP server on an already bound listener (tests bind port 0). Signals are left to the
/// caller, which decides how to stop it.
pub fn http_server(
    state: web::Data<AppState>,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = match state.config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown = state.config.server.shutdown_timeout_secs;
    let tls = tls_config(&state.config.server.tls)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e:#}")))?;
    let addr = listener.local_addr()?;
    if let Some(why) = plain_http_refusal(addr, tls.is_some(), state.config.server.allow_plain_http)
    {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    }
    let header_timeout = state.config.limits.request_header_timeout_secs;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(api::observe))
            .configure(api::routes)
    })
    // A client certificate (mTLS) is per connection: its subject is kept with the connection
    // for the authentication in `api::observe`.
    .on_connect(|connection, data| {
        if let Some(subject) = crate::auth::connection_certificate_subject(connection) {
            data.insert(api::auth::PeerCertificate { subject });
        }
    })
    .client_request_timeout(std::time::Duration::from_secs(header_timeout))
    .workers(workers)
    .shutdown_timeout(shutdown)
    .disable_signals();
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, cfg)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Why plain HTTP must not be served on `addr`, if it must not: health data crosses the network
/// only encrypted, unless an operator says a proxy in front terminates TLS.
fn plain_http_refusal(addr: std::net::SocketAddr, tls: bool, allowed: bool) -> Option<String> {
    (!tls && !allowed && !addr.ip().is_loopback()).then(|| {
        format!(
            "refusing plain HTTP on {addr}, which is not a loopback address: configure \
             [server.tls] (cert_file, key_file), or set server.allow_plain_http = true behind a \
             proxy that terminates TLS"
        )
    })
}

/// The rustls server configuration for `[server.tls]`, or `None` when no certificate is set.
pub fn tls_config(
    tls: &crate::config::ServerTlsConfig,
) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if tls.cert_file.is_empty() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("reading the private key {}", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if tls.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&tls.client_ca_file)
            .with_context(|| format!("reading the client CA file {}", tls.client_ca_file))?
        {
            roots
                .add(c.with_context(|| format!("a certificate in {}", tls.client_ca_file))?)
                .context("adding a client CA")?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("the client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("the server certificate and key do not fit together")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(cfg))
}

/// Run the gateway until SIGTERM or SIGINT, then let in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen.clone();
    let db = redact(&config.database.url);
    let state = build_state(config).await?;
    let dev_notice = state.auth.dev_token_notice();
    let forwarder = state.forwarder.clone();
    let bulk = state.bulk.clone();
    let auditor = state.auditor.clone();
    let listener =
        TcpListener::bind(&listen).with_context(|| format!("cannot listen on {listen}"))?;
    let server = http_server(state, listener)?;
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        handle.stop(true).await;
    });
    tracing::info!(listen = %listen, database = %db, "Sektorbro is serving FHIR R4 at http://{listen}/fhir");
    if let Some(notice) = dev_notice {
        // Once, on stderr, not in the log: a token is a credential.
        eprintln!("{notice}");
    }
    let served = server.await.context("HTTP server failed");
    forwarder.stop();
    bulk.stop();
    // After the last request and the claiming of jobs: write every audit event still queued.
    auditor.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Start logging (text or JSON lines), filtered by `RUST_LOG` or the config, and, with
/// `[telemetry] otlp_endpoint` set, the export of traces (their posts run on `runtime`). The
/// returned [`crate::telemetry::Telemetry`] must be shut down at exit to send the last spans.
pub fn init_logging(
    config: &Config,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Option<crate::telemetry::Telemetry>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let log = tracing_subscriber::fmt::layer().with_writer(crate::logmask::stdout);
    let log = if config.log.format == "json" {
        log.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed()
    } else {
        log.with_filter(filter).boxed()
    };
    let (traces, telemetry) = match crate::telemetry::layer(&config.telemetry, runtime)? {
        Some((layer, telemetry)) => (Some(layer), Some(telemetry)),
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init();
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            super::redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    use super::plain_http_refusal;

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        let lan: std::net::SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let v6: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(plain_http_refusal(lan, false, false).is_some());
        assert!(plain_http_refusal(lan, true, false).is_none());
        assert!(plain_http_refusal(lan, false, true).is_none());
        assert!(plain_http_refusal(local, false, false).is_none());
        assert!(plain_http_refusal(v6, false, false).is_none());
    }
}
