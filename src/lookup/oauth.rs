//! OAuth 2.0 access tokens for calling regional systems (client-credentials grant, RFC 6749
//! §4.4), cached until shortly before they expire; concurrent callers needing the same token
//! share one request to the token endpoint. An expired token is never served: there is no stale
//! bound here, a failing token endpoint is the answer.
//!
//! The credentials come from the caller (e.g. the forwarding configuration of a region), so this
//! cache needs no configuration of its own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::upstream::{Fetched, Upstream};
use super::{LookupCache, LookupError, Settings};

/// Tokens are refreshed this long before the endpoint says they expire.
const MARGIN: Duration = Duration::from_secs(30);

/// A client's credentials at one token endpoint.
#[derive(Clone)]
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated scopes, if the endpoint wants them.
    pub scope: Option<String>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("scope", &self.scope)
            .finish()
    }
}

impl ClientCredentials {
    /// The cache key: endpoint, client and scope (never the secret).
    fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.token_url,
            self.client_id,
            self.scope.as_deref().unwrap_or_default()
        )
    }
}

/// An access token and how long it may be used from when it was fetched.
#[derive(Clone, PartialEq)]
pub struct AccessToken {
    pub access_token: String,
    /// `Bearer`, usually.
    pub token_type: String,
    lifetime: Duration,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Access tokens by (token endpoint, client, scope).
pub struct TokenCache {
    client: reqwest::Client,
    cache: LookupCache<Arc<AccessToken>>,
}

impl TokenCache {
    pub fn new(client: reqwest::Client) -> TokenCache {
        TokenCache {
            client,
            cache: LookupCache::with_freshness(
                "oauth_tokens",
                Settings {
                    capacity: 1024,
                    ttl: Duration::from_secs(24 * 3600),
                    negative_ttl: Duration::from_secs(1),
                    max_stale: Duration::ZERO,
                },
                |t| t.lifetime,
            ),
        }
    }

    pub(crate) fn cache(&self) -> &LookupCache<Arc<AccessToken>> {
        &self.cache
    }

    /// A token for `creds`: cached while it has more than 30 s to live, else a new one.
    pub async fn token(&self, creds: &ClientCredentials) -> Result<Arc<AccessToken>, LookupError> {
        let up = Upstream::new("oauth", &creds.token_url, 10_000, self.client.clone());
        let owned = creds.clone();
        let got = self
            .cache
            .get(
                &creds.key(),
                move || async move { fetch(&up, &owned).await },
            )
            .await?;
        got.value.ok_or_else(|| LookupError::BadGateway {
            upstream: "oauth",
            detail: "the token endpoint issued no token".into(),
        })
    }

    /// Forget the token for `creds` (e.g. after the resource server rejected it with 401).
    pub fn forget(&self, creds: &ClientCredentials) {
        self.cache.invalidate(&creds.key());
    }
}

async fn fetch(
    up: &Upstream,
    creds: &ClientCredentials,
) -> Result<Option<Arc<AccessToken>>, LookupError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &creds.scope {
        form.push(("scope", scope));
    }
    let request = up
        .client
        .post(&up.base)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    let body = match up.send(request).await? {
        Fetched::Json(b) => b,
        Fetched::NotFound => return Err(up.bad("the token endpoint answered 404".into())),
    };
    let Some(access_token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(up.bad("the token endpoint's answer has no access_token".into()));
    };
    // Without expires_in, the token is used for a minute before asking again.
    let expires_in = body.get("expires_in").and_then(Value::as_u64).unwrap_or(90);
    Ok(Some(Arc::new(AccessToken {
        access_token: access_token.to_string(),
        token_type: body
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or("Bearer")
            .to_string(),
        lifetime: Duration::from_secs(expires_in).saturating_sub(MARGIN),
    })))
}
