//! One typed configuration, read from `config/default.toml` (compiled in), an optional file, then
//! `SEKTORBRO_*` environment variables, and checked once at start.
//!
//! Nothing else in the crate reads the environment or config files: everything gets a `Config`.

use std::path::Path;

use serde::Deserialize;

/// The compiled-in defaults: a fresh clone runs with no file at all.
const DEFAULT_TOML: &str = include_str!("../config/default.toml");

mod check;

/// The whole configuration of one gateway instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub search: SearchConfig,
    pub validation: ValidationConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub lookups: LookupsConfig,
    pub limits: LimitsConfig,
    pub forwarding: ForwardingConfig,
    pub audit: AuditConfig,
    pub auth: AuthnConfig,
    pub console: ConsoleConfig,
    pub bulk: BulkConfig,
    pub telemetry: TelemetryConfig,
}

/// OpenTelemetry traces over OTLP/HTTP (`src/telemetry.rs`, docs/operations.md); off while
/// `otlp_endpoint` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
    pub service_name: String,
    pub sample_ratio: f64,
    pub export_timeout_ms: u64,
    pub batch_delay_ms: u64,
    pub max_queue: usize,
}

/// Bulk Data export (`src/bulk/`, docs/bulk.md): where the NDJSON files go, how long they are
/// kept, and how the background runner works.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// Run export jobs on this instance (kick-offs are accepted either way).
    pub enabled: bool,
    /// Folder of the export files, one sub-folder per job (created when needed). Instances that
    /// share a database must share this folder.
    pub export_dir: String,
    /// Seconds a finished export's files (and status) are kept; then they are deleted.
    pub retention_secs: u64,
    /// `Retry-After` on a status answer of an export still running, in seconds.
    pub retry_after_secs: u64,
    /// Resources per NDJSON file; a type with more is split into several files.
    pub max_resources_per_file: u64,
    /// Resources read from the database per page.
    pub page_size: usize,
    /// How long a running job belongs to its instance without a sign of life; then another
    /// instance (or this one after a restart) starts it again.
    pub lease_secs: u64,
    /// Exports one client may have waiting or running at once (more: 429).
    pub max_active_per_client: i64,
}

/// Who may call the gateway (`src/auth/`): token issuers, the clients they speak for, and the
/// development client. (Named `AuthnConfig` because [`AuthConfig`] is a forwarding destination's
/// OAuth2 credentials, where the gateway is the client.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// Seconds of clock difference tolerated on `exp`, `nbf` and `iat`.
    pub clock_skew_secs: u64,
    /// The longest a token may still be valid when it is presented (its `exp` minus now), in
    /// seconds; a token expiring later is refused (401).
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// Accepted `aud` values; empty: `server.base_url` alone.
    pub audiences: Vec<String>,
    /// Verified tokens remembered (by hash, until they expire) so a repeat skips the signature.
    pub token_cache_capacity: u64,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    pub dev: DevClientConfig,
}

/// A token issuer and where its signing keys are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim, exactly.
    pub iss: String,
    /// Its JSON Web Key Set (fetched and cached through `[lookups.jwks]`, which gets this URL).
    #[serde(default)]
    pub jwks_url: String,
    /// PEM files holding `PUBLIC KEY` (RSA or EC P-256/P-384) or `CERTIFICATE` sections.
    #[serde(default)]
    pub public_key_files: Vec<String>,
    /// Accepted `alg` values, a subset of RS256, RS384, ES256, ES384.
    #[serde(default = "all_algorithms")]
    pub algorithms: Vec<String>,
    /// Where clients get this issuer's tokens (OAuth2 client credentials with a signed JWT
    /// assertion), published in SMART discovery and the CapabilityStatement; empty: not published.
    #[serde(default)]
    pub token_endpoint: String,
    /// Its authorization endpoint, if it has one. R4's `oauth-uris` extension requires both, so
    /// the CapabilityStatement names them only when both are set; Backend Services need only
    /// the token endpoint, which SMART discovery publishes alone.
    #[serde(default)]
    pub authorize_endpoint: String,
}

/// The JWS algorithms the gateway verifies.
pub const JWT_ALGORITHMS: [&str; 4] = ["RS256", "RS384", "ES256", "ES384"];

fn all_algorithms() -> Vec<String> {
    JWT_ALGORITHMS.iter().map(|a| a.to_string()).collect()
}

/// A client: who it is, what it may do, and how it proves it (a token from `issuer` whose `sub`
/// or `client_id` is `subject`, and/or a TLS client certificate with `certificate_subject`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    pub kind: crate::auth::ClientKind,
    /// Organization identifiers `system|value`; the first owns what the client writes.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// The most it may be granted, as a SMART scope string (`system/CarePlan.cruds system/*.rs`).
    pub scopes: String,
    /// The `iss` of its tokens (one of `[[auth.issuers]]`); empty: no tokens.
    #[serde(default)]
    pub issuer: String,
    /// Its tokens' `sub` (or `client_id`) claim; empty: the `id`.
    #[serde(default)]
    pub subject: String,
    /// Its TLS client certificate's subject (RFC 4514, e.g. `CN=ehr,O=Haderslev Kommune,C=DK`);
    /// empty: no certificate.
    #[serde(default)]
    pub certificate_subject: String,
}

/// The development client: a static bearer token, accepted only on loopback.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevClientConfig {
    pub enabled: bool,
    pub client_id: String,
    pub kind: crate::auth::ClientKind,
    pub organizations: Vec<String>,
    pub scopes: String,
    /// From `SEKTORBRO_DEV_TOKEN`; never from a file. `None`: one is generated at start.
    #[serde(skip)]
    pub token: Option<String>,
}

impl std::fmt::Debug for DevClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevClientConfig")
            .field("enabled", &self.enabled)
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field("organizations", &self.organizations)
            .field("scopes", &self.scopes)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The web console at `/console` (`src/api/console/`, docs/console.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at all (off: `/console` answers 404).
    pub enabled: bool,
    /// Minutes a sign-in lasts (the session cookie's lifetime; at most the token's own).
    pub session_minutes: u64,
    /// The key that signs session cookies (32+ characters), the same on every instance behind
    /// one address; empty: a random key per process (sessions end when it restarts).
    pub session_key: String,
    /// The Flows page's target line for the 24-hour discharge rate, 0 to 1.
    pub discharge_target: f64,
}

/// The audit trail (`src/audit/`, docs/audit.md): a compact row per attempt; a write's row in the
/// write's own transaction, every other row written by the audit writer (group commit) before
/// the response leaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record the audit trail at all.
    pub enabled: bool,
    /// Records waiting for the audit writer. When full (the database cannot keep up), requests
    /// wait for room: nothing is dropped (`sektorbro_audit_backpressure_total` counts the waits).
    pub queue_capacity: usize,
    /// Most records written in one database transaction.
    pub batch_size: usize,
    /// How often unsealed rows are chained into the hash chain, in milliseconds.
    pub seal_interval_ms: u64,
    /// Days audit rows are kept (0: for ever). Older rows are deleted hourly, as a prefix of the
    /// hash chain, which is anchored at the last deleted row.
    pub retention_days: u32,
    /// This gateway's name in AuditEvents (`source.observer`, `source.site`); empty: the
    /// `server.base_url`, or "sektorbro" when that is empty too.
    pub observer: String,
    /// Longest query string kept in an AuditEvent, in bytes; a longer one is cut there (at a
    /// character boundary) and the event says how long it was.
    pub max_query_bytes: usize,
    /// Longest time, in milliseconds, a read's, search's or refusal's record may be committed
    /// but not yet synced to disk (at risk on power loss, never on a process crash: it is in
    /// the operating system before the response leaves). 0: every audit commit is synced before
    /// its response leaves. A write's record is always synced with the write.
    pub max_unsynced_ms: u64,
    /// Where the records of reads, searches, refusals and forwarding attempts are appended
    /// before their response leaves, to be copied into the database in the background
    /// (docs/audit.md, "The journal"). Empty: beside a SQLite database file, `<file>.audit`;
    /// with PostgreSQL (or an in-memory database) no journal, and those records are committed
    /// to the database before their response leaves. Not used when `max_unsynced_ms` is 0.
    pub journal_dir: String,
}

impl AuditConfig {
    /// The journal's directory for a gateway on `database_url`, if it has one.
    pub fn journal(&self, database_url: &str) -> Option<std::path::PathBuf> {
        if self.max_unsynced_ms == 0 {
            return None;
        }
        if !self.journal_dir.is_empty() {
            return Some(self.journal_dir.clone().into());
        }
        crate::store::sqlite_file(database_url).map(|f| {
            let mut name = f.into_os_string();
            name.push(".audit");
            name.into()
        })
    }
}

/// Limits that keep hostile or broken input from taking the service down. Each refusal is an
/// OperationOutcome: 413 (body size, in `server`), 422 (nesting, Bundle entries), 429 (rate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Deepest nesting of objects and arrays accepted in a request body.
    pub max_json_depth: usize,
    /// Most entries accepted in a posted Bundle (transaction, batch, message).
    pub max_bundle_entries: usize,
    /// Requests per second each client may make on average (0: no limit), and how many it may
    /// make at once after being idle. A client is its configured id once authenticated, else
    /// its peer address.
    pub rate_per_second: f64,
    pub rate_burst: u32,
    /// Seconds a client has to send a request's headers before the connection is closed.
    pub request_header_timeout_secs: u64,
    /// Longest pause in sending a request body, in seconds, and the time after which the body
    /// must have come at `body_min_bytes_per_sec` on average (0: no rate); slower: 408.
    pub body_read_timeout_secs: u64,
    pub body_min_bytes_per_sec: u64,
}

/// What happens to a resource that fails profile validation on a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationMode {
    /// Reject with 422 and an OperationOutcome listing every problem.
    Enforce,
    /// Accept, log the problems and count them in metrics.
    Warn,
    /// Do not validate on write (`$validate` still works).
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    pub mode: ValidationMode,
    /// FHIR packages loaded on top of the embedded R4 base (.tgz, package folders, or folders of
    /// StructureDefinition/ValueSet/CodeSystem JSON files), in order.
    pub packages: Vec<String>,
    /// Profiles every written resource of a type must conform to, e.g.
    /// `CarePlan = ["http://fhir.kl.dk/rehab/StructureDefinition/klgateway-140-care-plan"]`.
    pub required: std::collections::BTreeMap<String, Vec<String>>,
    /// Refuse to start when anything in `packages` cannot be loaded or compiled (a file, a
    /// profile, a value set, a FHIRPath expression); otherwise each is logged and counted.
    pub strict: bool,
    /// Where an extension whose definition is not loaded is accepted with a warning instead of
    /// being refused: URL prefixes (`http://hl7.org/fhir/StructureDefinition/`) or host names
    /// (`example.org`, covering its subdomains).
    pub allowed_extension_domains: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub base_url: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    /// Serve plain HTTP on a non-loopback address (e.g. behind a TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// Addresses (`10.0.0.7`) and networks (`10.0.0.0/24`, `::1/128`) of the reverse proxies whose
    /// `Forwarded` / `X-Forwarded-For/Host/Proto` headers are believed. Empty: nobody's.
    pub trusted_proxies: TrustedProxies,
    /// Which forwarding headers the trusted proxies set; the other family is ignored.
    pub forwarded_headers: ForwardedHeaders,
    pub tls: ServerTlsConfig,
}

/// `server.forwarded_headers`: the family of forwarding headers the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` (nginx, HAProxy, most load
    /// balancers).
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// RFC 7239 `Forwarded: for=…;host=…;proto=…`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// `server.trusted_proxies`, parsed once: the peers whose forwarding headers say who the client
/// is and which host and scheme it used.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Parse addresses and CIDR networks; the error names the entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<ipnet::IpNet>()
                    .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!(
                            "server.trusted_proxies: {e:?} is neither an IP address nor a network \
                             (e.g. \"10.0.0.7\" or \"10.0.0.0/24\")"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether forwarding headers from `peer` are believed.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        // An IPv4 proxy reaching a dual-stack listener shows up as `::ffff:a.b.c.d`.
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&peer))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        TrustedProxies::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// HTTPS with rustls. Empty `cert_file`: plain HTTP (loopback only, unless allowed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA certificates; when set, every client must present a certificate they issued (mTLS).
    pub client_ca_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub sqlite_synchronous: String,
    /// SQLite only: the page size a new database file is created with (512–65536, a power of
    /// two); an existing file keeps its own.
    pub sqlite_page_size: u32,
    /// SQLite only: reads by key (read, vread, and `_include`d and referenced resources) run on
    /// the request's own thread instead of a round trip to sqlx's connection thread.
    pub sqlite_direct_reads: bool,
    /// Every statement is stopped after this long (0: never): PostgreSQL's `statement_timeout`
    /// on each pooled session, SQLite's progress handler. The request gets 503 with `Retry-After`.
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub default_count: usize,
    pub max_count: usize,
    /// Most bytes of stored resources in one page of matches (at least one match): a page of
    /// large resources ends early and its next link goes on.
    pub max_page_bytes: usize,
    /// Caps on what one search may ask (400 past any of them; see `SearchCaps`).
    pub max_parameters: usize,
    pub max_alternatives: usize,
    pub max_alternatives_total: usize,
    pub max_chains: usize,
    pub max_includes: usize,
}

impl SearchConfig {
    /// The caps for the search parser.
    pub fn caps(&self) -> fhir_core::fhir::search::SearchCaps {
        fhir_core::fhir::search::SearchCaps {
            max_parameters: self.max_parameters,
            max_alternatives: self.max_alternatives,
            max_alternatives_total: self.max_alternatives_total,
            max_chains: self.max_chains,
            max_includes: self.max_includes,
        }
    }
}

/// The storage layer's caches of current versions, versions and search results.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Memory for cached current versions (a quarter as much again for immutable versions).
    pub resources_mib: u64,
    /// Memory for cached search results.
    pub searches_mib: u64,
    /// The longest any entry is served; on PostgreSQL the bound on staleness should a
    /// notification from another instance go missing without its connection being reported lost.
    pub max_staleness_secs: u64,
}

/// Upstreams the gateway looks things up in, each behind its own cache (`src/lookup/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupsConfig {
    /// PEM file of extra trusted CA certificates; empty for the built-in roots only.
    pub ca_file: String,
    pub patients: UpstreamConfig,
    pub organizations: UpstreamConfig,
    pub terminology: UpstreamConfig,
    pub jwks: JwksConfig,
}

/// One FHIR upstream and its cache. An empty `base_url` means not configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub base_url: String,
    pub ttl_secs: u64,
    pub negative_ttl_secs: u64,
    pub max_stale_secs: u64,
    pub capacity: u64,
    pub timeout_ms: u64,
}

/// JSON Web Key Sets by URL; no URLs means not configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    pub urls: Vec<String>,
    pub ttl_secs: u64,
    pub max_stale_secs: u64,
    /// An unknown `kid` refetches a key set at most this often.
    pub min_refetch_secs: u64,
    pub timeout_ms: u64,
}

/// Forwarding of FHIR messages to regional systems (`src/forward/`, docs/forwarding.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Run delivery workers on this instance (messages are accepted either way).
    pub enabled: bool,
    /// Workers per destination.
    pub workers: usize,
    /// Jobs one worker claims (and delivers concurrently) at a time.
    pub batch_size: usize,
    /// How often an idle worker looks for due jobs (new submissions wake it at once).
    pub poll_interval_ms: u64,
    /// How long a claimed job belongs to its worker; after that another instance may take it.
    pub lease_secs: u64,
    pub max_attempts: i64,
    pub max_age_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that open a destination's circuit breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown_secs: u64,
    /// EAN/GLN location numbers by SOR code (value only): MedCom messages identify every sending
    /// and receiving organization by both, and neither the records nor the notes carry GLNs.
    #[serde(default)]
    pub gln: std::collections::BTreeMap<String, String>,
    pub destinations: Vec<DestinationConfig>,
}

/// How a destination receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationKind {
    /// POST the Bundle to `{base_url}/$process-message`.
    FhirMessage,
    /// Cambio Cosmic Link: the same, with an OAuth2 client-credentials bearer token.
    CosmicLink,
    /// A MedCom receiver: discharge notes become MedCom CareCommunication messages, POSTed to
    /// `{base_url}/$process-message` (OAuth2 when `[auth]` is given).
    Medcom,
}

/// One regional system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub id: String,
    pub kind: DestinationKind,
    pub base_url: String,
    /// Organization identifiers (`system|value`) routed here.
    pub receivers: Vec<String>,
    #[serde(default = "default_destination_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// 24 hours: far above what issuers hand out (minutes to hours), far below "never".
fn default_max_token_lifetime() -> u64 {
    24 * 60 * 60
}

fn default_destination_timeout() -> u64 {
    10_000
}

/// OAuth2 client credentials of a destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    /// Name of an environment variable holding the secret (read at start, wins over
    /// `client_secret`).
    #[serde(default)]
    pub client_secret_env: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("client_secret_env", &self.client_secret_env)
            .field("scope", &self.scope)
            .finish()
    }
}

/// TLS towards a destination: extra trusted CAs and a client certificate (mTLS), PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub client_cert: String,
    #[serde(default)]
    pub client_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: String,
}

/// Why a configuration could not be loaded; printed to the operator at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config ({origin}): {source}")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, overlaid by `file` (if any), overlaid by the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, |k| std::env::var(k).ok())
    }

    /// As [`Config::load`], with the environment supplied by the caller (tests use this).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = parse_table(DEFAULT_TOML, "built-in defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let overlay = parse_table(&text, &path.display().to_string())?;
            merge(&mut merged, overlay);
        }
        let mut config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|source| ConfigError::Parse {
                    origin: file.map_or("defaults".into(), |p| p.display().to_string()),
                    source,
                })?;
        if let Some(listen) = env("SEKTORBRO_LISTEN") {
            config.server.listen = listen;
        }
        if let Some(url) = env("SEKTORBRO_DATABASE_URL") {
            config.database.url = url;
        }
        if let Some(endpoint) = env("SEKTORBRO_OTLP_ENDPOINT") {
            config.telemetry.otlp_endpoint = endpoint;
        }
        config.auth.dev.token = env("SEKTORBRO_DEV_TOKEN").filter(|t| !t.is_empty());
        // An issuer's key set is fetched through the JWKS lookup, which must know its URL.
        for i in &config.auth.issuers {
            let url = i.jwks_url.trim_end_matches('/');
            if !url.is_empty()
                && !config
                    .lookups
                    .jwks
                    .urls
                    .iter()
                    .any(|u| u.trim_end_matches('/') == url)
            {
                config.lookups.jwks.urls.push(url.to_string());
            }
        }
        for d in &mut config.forwarding.destinations {
            if let Some(auth) = &mut d.auth {
                if !auth.client_secret_env.is_empty() {
                    auth.client_secret = env(&auth.client_secret_env).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "forwarding destination {}: environment variable {} (auth.client_secret_env) is not set",
                            d.id, auth.client_secret_env
                        ))
                    })?;
                }
            }
        }
        config.check()?;
        Ok(config)
    }

    /// The defaults alone, for tests and tools that need no file.
    pub fn defaults() -> Config {
        Self::load_with_env(None, |_| None).expect("the built-in config/default.toml is valid")
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "server.listen / SEKTORBRO_LISTEN must be HOST:PORT with an IP address, got {:?}",
                self.server.listen
            )));
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "database.url / SEKTORBRO_DATABASE_URL must start with sqlite: or postgres://, got {url:?}"
            )));
        }
        if !matches!(self.database.sqlite_synchronous.as_str(), "full" | "normal") {
            return Err(ConfigError::Invalid(
                "database.sqlite_synchronous must be \"full\" or \"normal\"".into(),
            ));
        }
        let page = self.database.sqlite_page_size;
        if !(512..=65536).contains(&page) || !page.is_power_of_two() {
            return Err(ConfigError::Invalid(format!(
                "database.sqlite_page_size must be a power of two from 512 to 65536, got {page}"
            )));
        }
        let b = &self.bulk;
        if b.export_dir.is_empty()
            || b.page_size == 0
            || b.max_resources_per_file == 0
            || b.lease_secs == 0
            || b.retry_after_secs == 0
        {
            return Err(ConfigError::Invalid(
                "bulk.export_dir must be set, and bulk.page_size, bulk.max_resources_per_file, \
                 bulk.lease_secs and bulk.retry_after_secs must be at least 1"
                    .into(),
            ));
        }
        if self.search.default_count == 0 || self.search.default_count > self.search.max_count {
            return Err(ConfigError::Invalid(
                "search.default_count must be between 1 and search.max_count".into(),
            ));
        }
        if self.cache.max_staleness_secs == 0 {
            return Err(ConfigError::Invalid(
                "cache.max_staleness_secs must be at least 1 (set cache.enabled = false instead)"
                    .into(),
            ));
        }
        self.check_lookups()?;
        self.check_forwarding()?;
        let a = &self.audit;
        if a.queue_capacity == 0 || a.batch_size == 0 || a.seal_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "audit: queue_capacity, batch_size and seal_interval_ms must be at least 1".into(),
            ));
        }
        self.check_auth()?;
        let c = &self.console;
        if c.session_minutes == 0 || c.session_minutes > 24 * 60 {
            return Err(ConfigError::Invalid(
                "console.session_minutes must be from 1 to 1440".into(),
            ));
        }
        if !c.session_key.is_empty() && c.session_key.len() < 32 {
            return Err(ConfigError::Invalid(
                "console.session_key must be empty (a random key per process) or 32+ characters"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&c.discharge_target) {
            return Err(ConfigError::Invalid(format!(
                "console.discharge_target must be from 0 to 1, got {}",
                c.discharge_target
            )));
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            return Err(ConfigError::Invalid(format!(
                "log.format must be \"json\" or \"text\", got {:?}",
                self.log.format
            )));
        }
        self.check_telemetry()
    }

    fn check_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        let endpoint = t.otlp_endpoint.as_str();
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "telemetry.otlp_endpoint / SEKTORBRO_OTLP_ENDPOINT must be empty or an http(s) URL, got {endpoint:?}"
            )));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "telemetry.sample_ratio must be from 0 to 1, got {}",
                t.sample_ratio
            )));
        }
        if t.service_name.is_empty() || t.export_timeout_ms == 0 || t.batch_delay_ms == 0 {
            return Err(ConfigError::Invalid(
                "telemetry.service_name must not be empty, and export_timeout_ms and \
                 batch_delay_ms must be above 0"
                    .into(),
            ));
        }
        if t.max_queue == 0 {
            return Err(ConfigError::Invalid(
                "telemetry.max_queue must be above 0".into(),
            ));
        }
        Ok(())
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })
}

/// Overlay `top` onto `base`, table by table, so a file only needs the keys it changes.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_with_sqlite() {
        let c = Config::defaults();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert!(c.database.url.starts_with("sqlite:"));
    }

    #[test]
    fn environment_overrides_listen_and_database() {
        let c = Config::load_with_env(None, |k| match k {
            "SEKTORBRO_LISTEN" => Some("127.0.0.1:9999".into()),
            "SEKTORBRO_DATABASE_URL" => Some("postgres://u@127.0.0.1/test".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.database.url, "postgres://u@127.0.0.1/test");
    }

    #[test]
    fn telemetry_is_off_by_default_and_its_endpoint_comes_from_the_environment() {
        assert_eq!(Config::defaults().telemetry.otlp_endpoint, "");
        let c = Config::load_with_env(None, |k| {
            (k == "SEKTORBRO_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4318".to_string())
        })
        .expect("valid");
        assert_eq!(c.telemetry.otlp_endpoint, "http://127.0.0.1:4318");
        let bad = Config::load_with_env(None, |k| {
            (k == "SEKTORBRO_OTLP_ENDPOINT").then(|| "collector:4318".to_string())
        });
        assert!(
            matches!(&bad, Err(ConfigError::Invalid(m)) if m.contains("otlp_endpoint")),
            "{bad:?}"
        );
    }

    #[test]
    fn file_overlays_only_the_keys_it_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[search]\ndefault_count = 5\n").expect("write");
        let c = Config::load_with_env(Some(&path), |_| None).expect("valid");
        assert_eq!(c.search.default_count, 5);
        assert_eq!(c.search.max_count, 1000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten_on = \"x\"\n").expect("write");
        assert!(Config::load_with_env(Some(&path), |_| None).is_err());
        let bad = Config::load_with_env(None, |k| {
            (k == "SEKTORBRO_LISTEN").then(|| "localhost".to_string())
        });
        assert!(matches!(bad, Err(ConfigError::Invalid(_))));
    }
}
