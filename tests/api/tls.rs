//! TLS with certificates generated in the test (rcgen): the gateway serves HTTPS; with a client
//! CA configured it refuses clients without a certificate from that CA (mTLS); and forwarding
//! presents its client certificate to a receiver that requires one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

use crate::helpers::{spawn_app_with, Db, TestApp};

/// A certificate authority that issues server and client certificates into a folder.
struct Pki {
    dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate file.
    ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} test CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Pki {
            dir: dir.to_path_buf(),
            params,
            key,
            ca,
        }
    }

    /// Issue a certificate; returns (certificate file, key file).
    fn issue(&self, name: &str, sans: &[&str], client: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let cert_file = self.dir.join(format!("{name}.pem"));
        let key_file = self.dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        (cert_file, key_file)
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A client trusting only `ca`, presenting `identity` (certificate file, key file) if given.
fn client(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(ca).expect("read CA")).expect("CA PEM");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).expect("cert");
        pem.extend(std::fs::read(key).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

fn https(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.addr.replace("http://", "https://"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_and_requires_client_certificates_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = Pki::new(dir.path(), "server");
    let clients = Pki::new(dir.path(), "clients");
    let other = Pki::new(dir.path(), "other");
    let (cert, key) = servers.issue("gateway", &["127.0.0.1", "localhost"], false);

    // HTTPS, no client certificates asked for.
    let (c, k) = (s(&cert), s(&key));
    let app = spawn_app_with(Db::Sqlite, move |cfg| {
        cfg.server.tls.cert_file = c;
        cfg.server.tls.key_file = k;
    })
    .await
    .expect("app");
    let res = client(&servers.ca, None)
        .get(https(&app, "/fhir/metadata"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(res.status().as_u16(), 200);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(reqwest::Client::new()
        .get(format!("{}/fhir/metadata", app.addr))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
        .eq(&false));

    // mTLS: only clients with a certificate from the configured CA get through.
    let (c, k, ca) = (s(&cert), s(&key), s(&clients.ca));
    let app = spawn_app_with(Db::Sqlite, move |cfg| {
        cfg.server.tls.cert_file = c;
        cfg.server.tls.key_file = k;
        cfg.server.tls.client_ca_file = ca;
        cfg.auth.clients.push(sektorbro::config::ClientConfig {
            id: "haderslev-cert".into(),
            kind: sektorbro::auth::ClientKind::Municipality,
            organizations: vec![crate::tokens::HADERSLEV.into()],
            scopes: "system/*.rs".into(),
            issuer: String::new(),
            subject: String::new(),
            certificate_subject: "CN=haderslev-kommune".into(),
        });
    })
    .await
    .expect("app");
    let good = clients.issue("haderslev-kommune", &[], true);
    let res = client(&servers.ca, Some(&good))
        .get(https(&app, "/fhir/metadata"))
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(res.status().as_u16(), 200);
    // The certificate's subject maps to a configured client: authenticated without a token,
    // with that client's scopes.
    let res = client(&servers.ca, Some(&good))
        .get(https(&app, "/fhir/CarePlan"))
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(res.status().as_u16(), 200);
    let res = client(&servers.ca, Some(&good))
        .post(https(&app, "/fhir/CarePlan"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/x"}}"#)
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(res.status().as_u16(), 403, "read-only scopes");
    // A certificate from the right CA whose subject no client has: the handshake succeeds,
    // the request is unauthenticated.
    let unmapped = clients.issue("unmapped-system", &[], true);
    let res = client(&servers.ca, Some(&unmapped))
        .get(https(&app, "/fhir/CarePlan"))
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(res.status().as_u16(), 401);
    let none = client(&servers.ca, None)
        .get(https(&app, "/fhir/metadata"))
        .send()
        .await;
    assert!(none.is_err(), "no client certificate: the handshake fails");
    let stranger = other.issue("stranger", &[], true);
    let wrong = client(&servers.ca, Some(&stranger))
        .get(https(&app, "/fhir/metadata"))
        .send()
        .await;
    assert!(
        wrong.is_err(),
        "a certificate from another CA: the handshake fails"
    );
}

#[test]
fn a_missing_key_file_is_a_clear_error() {
    let tls = sektorbro::config::ServerTlsConfig {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
        client_ca_file: String::new(),
    };
    let e = sektorbro::app::tls_config(&tls).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/cert.pem"), "{e:#}");
}

/// A receiver that requires client certificates from `client_ca` and records the message ids
/// it is sent. Returns its base URL.
async fn mtls_receiver(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    got: Arc<Mutex<Vec<String>>>,
) -> String {
    let tls = sektorbro::config::ServerTlsConfig {
        cert_file: s(cert),
        key_file: s(key),
        client_ca_file: s(client_ca),
    };
    let cfg = sektorbro::app::tls_config(&tls)
        .expect("receiver TLS")
        .expect("configured");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = actix_web::HttpServer::new(move || {
        let got = got.clone();
        actix_web::App::new().route(
            "/fhir/$process-message",
            actix_web::web::post().to(move |body: actix_web::web::Bytes| {
                let got = got.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        if let (Some(id), Ok(mut g)) = (v["id"].as_str(), got.lock()) {
                            g.push(id.to_string());
                        }
                    }
                    actix_web::HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, cfg)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("https://localhost:{port}/fhir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_presents_its_client_certificate_to_the_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = Pki::new(dir.path(), "region");
    let gateways = Pki::new(dir.path(), "gateways");
    let (rcert, rkey) = region.issue("region-receiver", &["localhost"], false);
    let got = Arc::new(Mutex::new(Vec::new()));
    let base = mtls_receiver(&rcert, &rkey, &gateways.ca, got.clone()).await;
    let (gcert, gkey) = gateways.issue("sektorbro", &[], true);

    let with_cert = |with: bool| {
        let base = base.clone();
        let (ca, cert, key) = (s(&region.ca), s(&gcert), s(&gkey));
        move |c: &mut sektorbro::config::Config| {
            crate::forwarding::fast(c);
            let mut d = crate::forwarding::destination("region", &base, &["111"]);
            d.tls = Some(sektorbro::config::TlsConfig {
                ca_file: ca,
                client_cert: if with { cert } else { String::new() },
                client_key: if with { key } else { String::new() },
            });
            c.forwarding.destinations = vec![d];
        }
    };
    let app = spawn_app_with(Db::Sqlite, with_cert(true))
        .await
        .expect("app");
    let id = "5b7c1f3e-2a44-4d71-9a9c-0c2a1d000001";
    let res = app
        .submit(&crate::forwarding::message(id, "111", "0703451234"))
        .await;
    assert_eq!(res.status().as_u16(), 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.lock().map(|g| g.is_empty()).unwrap_or(true) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got.lock().unwrap().as_slice(), [id.to_string()]);

    // Without the client certificate the receiver refuses the handshake: nothing arrives, and
    // the job waits for a retry with the error recorded.
    let app = spawn_app_with(Db::Sqlite, with_cert(false))
        .await
        .expect("app");
    let id2 = "5b7c1f3e-2a44-4d71-9a9c-0c2a1d000002";
    let res = app
        .submit(&crate::forwarding::message(id2, "111", "0703451234"))
        .await;
    assert_eq!(res.status().as_u16(), 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let job = loop {
        let job = app.admin(&format!("outbox/{id2}")).await;
        if job["attempts"].as_u64().unwrap_or(0) >= 1 && job["status"] != "in-flight"
            || std::time::Instant::now() > deadline
        {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_ne!(job["status"], "delivered", "{job}");
    assert!(!job["last_error"].is_null(), "{job}");
    assert_eq!(got.lock().unwrap().len(), 1);
}
