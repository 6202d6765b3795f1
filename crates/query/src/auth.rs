//! OAuth2 bearer tokens on the query API: JWTs signed by the hospital's identity provider,
//! verified against its JWKS, with SMART on FHIR scopes deciding what a caller may read.
//!
//! Authentication happens once per request ([`Authenticator::authenticate`]); authorisation
//! happens where every resource leaves the service, in the audit gate
//! ([`crate::audit::Auditor::record`]), so a new RPC cannot forget it. Scopes understood (v1
//! and v2 syntax): `patient/<Type|*>.read|.rs|.r`, `user/…`, `system/…`. A `patient/` scope
//! only reaches resources of the token's `patient` launch context. Other scopes (`openid`,
//! write scopes …) grant nothing here.
//!
//! `mode = "none"` (the default, for a loopback development stack) accepts every caller as
//! `anonymous`. Token contents are never logged; errors say what was wrong, not what was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The `[auth]` settings of the query service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (one of the token's audiences).
    pub audience: String,
    /// The issuer's JSON Web Key Set (`jwks_uri`).
    pub jwks_url: String,
    /// Keys are fetched again after this long, and at most this often when a token names an
    /// unknown key id (rotation) — but never more than once per 10 s.
    pub jwks_refresh_s: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_s: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every caller is `anonymous` (development on loopback only).
    #[default]
    None,
    /// A valid bearer JWT is required.
    Jwt,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            issuer: String::new(),
            audience: String::new(),
            jwks_url: String::new(),
            jwks_refresh_s: 300,
            leeway_s: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.mode = \"jwt\" needs auth.{0}")]
    Missing(&'static str),
    #[error("cannot fetch the JWKS from {url}: {detail}")]
    Jwks { url: String, detail: String },
}

/// Whose behalf a `scope` reads on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    Patient,
    User,
    System,
}

/// One read-granting SMART scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    /// `None` for `*`.
    pub resource_type: Option<String>,
}

impl Scope {
    /// The read grant of a SMART scope, or `None` when it grants no read (write-only, `openid`,
    /// `launch`, malformed …).
    pub fn parse(s: &str) -> Option<Scope> {
        let (context, rest) = s.split_once('/')?;
        let context = match context {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return None,
        };
        let (ty, perms) = rest.split_once('.')?;
        // v1: read | write | *; v2: a subset of "cruds" in that order (query params ignored).
        let perms = perms.split('?').next().unwrap_or_default();
        let reads = match perms {
            "read" | "*" => true,
            "write" => false,
            p => !p.is_empty() && is_cruds_subset(p) && (p.contains('r') || p.contains('s')),
        };
        let ty_ok = ty == "*"
            || (ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric()));
        (reads && ty_ok).then(|| Scope { context, resource_type: (ty != "*").then(|| ty.to_string()) })
    }

    fn covers(&self, resource_type: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|t| t == resource_type)
    }
}

fn is_cruds_subset(p: &str) -> bool {
    let mut order = "cruds".chars();
    p.chars().all(|c| order.by_ref().any(|o| o == c))
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: Vec<Scope>,
    /// SMART launch context: the patient `patient/` scopes are confined to.
    pub patient: Option<String>,
}

impl Principal {
    /// Acting for itself (only `system/` scopes), as a back-end service does.
    pub fn is_service(&self) -> bool {
        !self.scopes.is_empty() && self.scopes.iter().all(|s| s.context == ScopeContext::System)
    }

    /// May this caller see a `resource_type` resource about `patient` (None: not about one)?
    pub fn may_read(&self, resource_type: &str, patient: Option<&str>) -> bool {
        self.scopes.iter().any(|s| {
            s.covers(resource_type)
                && match s.context {
                    ScopeContext::User | ScopeContext::System => true,
                    ScopeContext::Patient => self.patient.is_some() && self.patient.as_deref() == patient,
                }
        })
    }

    /// May this caller search `resource_type` at all (before anything is found)?
    pub fn may_search(&self, resource_type: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s.covers(resource_type) && (s.context != ScopeContext::Patient || self.patient.is_some()))
    }
}

/// Claims read from a token (registered ones are checked by the validator).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    patient: Option<String>,
}

/// Verifies bearer tokens (or, in `none` mode, lets everyone in as anonymous).
#[derive(Clone)]
pub struct Authenticator {
    jwt: Option<Arc<Jwt>>,
}

struct Jwt {
    cfg: AuthConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Algorithms accepted from a token header: asymmetric only (a shared-secret HS* token could be
/// forged by anyone holding the public JWKS if the key type were confused).
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// The least time between two JWKS fetches caused by unknown key ids.
const MIN_REFETCH: Duration = Duration::from_secs(10);

impl Authenticator {
    /// Everyone is `anonymous`.
    pub fn none() -> Authenticator {
        Authenticator { jwt: None }
    }

    /// The authenticator `cfg` asks for; in `jwt` mode the JWKS is fetched now, so a wrong URL
    /// stops start-up.
    pub async fn from_config(cfg: &AuthConfig) -> Result<Authenticator, AuthSetupError> {
        if cfg.mode == AuthMode::None {
            tracing::warn!("auth.mode = \"none\": every caller is anonymous; use only on a loopback development stack");
            return Ok(Authenticator::none());
        }
        for (value, name) in [(&cfg.issuer, "issuer"), (&cfg.audience, "audience"), (&cfg.jwks_url, "jwks_url")] {
            if value.is_empty() {
                return Err(AuthSetupError::Missing(name));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthSetupError::Jwks { url: cfg.jwks_url.clone(), detail: e.to_string() })?;
        let set = fetch(&http, &cfg.jwks_url).await?;
        Ok(Authenticator::with_keys(cfg.clone(), http, set))
    }

    fn with_keys(cfg: AuthConfig, http: reqwest::Client, set: JwkSet) -> Authenticator {
        let keys = RwLock::new(Keys { set, fetched: Instant::now() });
        Authenticator { jwt: Some(Arc::new(Jwt { cfg, http, keys })) }
    }

    /// The caller behind `metadata`'s `authorization` header: `Ok(None)` in `none` mode,
    /// UNAUTHENTICATED when a token is required and missing or not valid.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Option<Principal>, Status> {
        let Some(jwt) = &self.jwt else { return Ok(None) };
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("a bearer token is required (authorization: Bearer <JWT>)"))?;
        jwt.verify(token).await.map(Some).map_err(|why| {
            tracing::info!(reason = %why, "bearer token refused");
            Status::unauthenticated(format!("the bearer token was refused: {why}"))
        })
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, AuthSetupError> {
    let err = |detail: String| AuthSetupError::Jwks { url: url.to_string(), detail };
    let r = http.get(url).send().await.map_err(|e| err(e.to_string()))?;
    if !r.status().is_success() {
        return Err(err(format!("HTTP {}", r.status())));
    }
    let body = r.bytes().await.map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| err(format!("not a JWK Set: {e}")))
}

impl Jwt {
    async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "it is not a well-formed JWT".to_string())?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.ok_or("its header names no key id (kid)")?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway_s;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "it has expired".to_string(),
                ImmatureSignature => "it is not valid yet (nbf)".to_string(),
                InvalidIssuer => "it was issued by another issuer".to_string(),
                InvalidAudience => "it is meant for another audience".to_string(),
                InvalidSignature => "its signature does not verify".to_string(),
                MissingRequiredClaim(c) => format!("it has no {c} claim"),
                InvalidAlgorithm => "its algorithm does not match the key".to_string(),
                Json(_) => "its claims are not of the expected types".to_string(),
                _ => "it could not be verified".to_string(),
            }
        })?;
        let c = data.claims;
        Ok(Principal {
            subject: c.sub.filter(|s| !s.is_empty()).ok_or("it has no sub claim")?,
            client_id: c.client_id.or(c.azp),
            scopes: c.scope.unwrap_or_default().split_whitespace().filter_map(Scope::parse).collect(),
            patient: c.patient,
        })
    }

    /// The key `kid`, fetching the JWKS again when it is stale or does not know the id yet
    /// (the provider rotated its keys).
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        let refresh = Duration::from_secs(self.cfg.jwks_refresh_s);
        {
            let keys = self.keys.read().await;
            let age = keys.fetched.elapsed();
            if let Some(jwk) = keys.set.find(kid)
                && age < refresh
            {
                return DecodingKey::from_jwk(jwk).map_err(|_| "its signing key is not usable".to_string());
            }
            if keys.set.find(kid).is_none() && age < MIN_REFETCH {
                return Err("it names a key id the issuer does not publish".into());
            }
        }
        let mut keys = self.keys.write().await;
        match fetch(&self.http, &self.cfg.jwks_url).await {
            Ok(set) => *keys = Keys { set, fetched: Instant::now() },
            // Keep serving with the keys we have; the issuer being briefly down is not a reason
            // to refuse tokens signed by keys already known.
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
        }
        let jwk = keys.set.find(kid).ok_or("it names a key id the issuer does not publish")?;
        DecodingKey::from_jwk(jwk).map_err(|_| "its signing key is not usable".to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A signing key pair and its public JWK.
    pub(crate) struct Issuer {
        pub kid: String,
        key: EncodingKey,
        pub jwk: serde_json::Value,
    }

    impl Issuer {
        pub(crate) fn new(kid: &str) -> Issuer {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let raw = pair.public_key_raw(); // 0x04 || x || y
            let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])});
            Issuer { kid: kid.into(), key: EncodingKey::from_ec_der(&pair.serialize_der()), jwk }
        }

        pub(crate) fn token(&self, claims: serde_json::Value) -> String {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
        }
    }

    pub(crate) fn cfg() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Jwt,
            issuer: "https://idp.test".into(),
            audience: "arteria-query".into(),
            jwks_url: "http://127.0.0.1:9/jwks".into(),
            ..AuthConfig::default()
        }
    }

    pub(crate) fn claims(scope: &str) -> serde_json::Value {
        let now = jiff::Timestamp::now().as_second();
        json!({"iss": "https://idp.test", "aud": "arteria-query", "sub": "dr-who", "azp": "ward-app",
            "exp": now + 300, "iat": now, "scope": scope})
    }

    pub(crate) fn authenticator(issuers: &[&Issuer]) -> Authenticator {
        let set: JwkSet =
            serde_json::from_value(json!({"keys": issuers.iter().map(|i| i.jwk.clone()).collect::<Vec<_>>()})).unwrap();
        Authenticator::with_keys(cfg(), reqwest::Client::new(), set)
    }

    fn bearer(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn scopes_v1_and_v2() {
        let s = |t: &str| Scope::parse(t);
        let user_obs = Scope { context: ScopeContext::User, resource_type: Some("Observation".into()) };
        assert_eq!(s("user/Observation.read"), Some(user_obs.clone()));
        assert_eq!(s("user/Observation.rs"), Some(user_obs.clone()));
        assert_eq!(s("user/Observation.s?category=laboratory"), Some(user_obs));
        assert_eq!(s("system/*.read"), Some(Scope { context: ScopeContext::System, resource_type: None }));
        assert_eq!(s("patient/*.cruds").map(|x| x.context), Some(ScopeContext::Patient));
        for none in [
            "user/Observation.write",
            "user/Observation.cu",
            "openid",
            "launch/patient",
            "user/observation.read",
            "user/Observation.sr",
            "admin/*.read",
            "user/*.",
        ] {
            assert_eq!(s(none), None, "{none}");
        }
    }

    #[test]
    fn patient_scopes_stay_in_the_patients_compartment() {
        let p = Principal {
            subject: "s".into(),
            client_id: None,
            scopes: vec![Scope::parse("patient/Observation.read").unwrap(), Scope::parse("user/Patient.read").unwrap()],
            patient: Some("p1".into()),
        };
        assert!(p.may_read("Observation", Some("p1")));
        assert!(!p.may_read("Observation", Some("p2")));
        assert!(!p.may_read("Observation", None));
        assert!(p.may_read("Patient", Some("p2")), "user/ scopes are not confined to the launch patient");
        assert!(!p.may_read("Encounter", Some("p1")));
        assert!(p.may_search("Observation") && !p.may_search("Encounter"));
        let no_context = Principal { patient: None, ..p.clone() };
        assert!(!no_context.may_read("Observation", Some("p1")) && !no_context.may_search("Observation"));
        assert!(!p.is_service());
        let svc = Principal { scopes: vec![Scope::parse("system/*.read").unwrap()], ..p };
        assert!(svc.is_service() && svc.may_read("Encounter", Some("p9")));
    }

    #[tokio::test]
    async fn a_valid_token_names_its_principal() {
        let idp = Issuer::new("k1");
        let auth = authenticator(&[&idp]);
        let mut c = claims("openid user/Observation.read patient/*.read");
        c["patient"] = json!("p1");
        let p = auth.authenticate(&bearer(&idp.token(c))).await.unwrap().unwrap();
        assert_eq!(
            (p.subject.as_str(), p.client_id.as_deref(), p.patient.as_deref()),
            ("dr-who", Some("ward-app"), Some("p1"))
        );
        assert_eq!(p.scopes.len(), 2, "openid grants no read: {:?}", p.scopes);
        assert_eq!(Authenticator::none().authenticate(&MetadataMap::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_the_reason() {
        let idp = Issuer::new("k1");
        let auth = authenticator(&[&idp]);
        let now = jiff::Timestamp::now().as_second();
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims("user/*.read");
            c[k] = v;
            c
        };
        let forger = Issuer::new("k1"); // same key id, different key
        let mut no_sub = claims("user/*.read");
        no_sub.as_object_mut().unwrap().remove("sub");
        let cases = [
            (idp.token(with("exp", json!(now - 3600))), "expired"),
            (idp.token(with("aud", json!("someone-else"))), "another audience"),
            (idp.token(with("iss", json!("https://evil.test"))), "another issuer"),
            (idp.token(with("nbf", json!(now + 3600))), "not valid yet"),
            (idp.token(no_sub), "no sub claim"),
            (forger.token(claims("user/*.read")), "signature does not verify"),
            (Issuer::new("k9").token(claims("user/*.read")), "key id the issuer does not publish"),
            ("not.a.jwt".to_string(), "not a well-formed JWT"),
            // alg "none" is not an algorithm the library even parses.
            (
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
                    URL_SAFE_NO_PAD.encode(claims("user/*.read").to_string())
                ),
                "not a well-formed JWT",
            ),
        ];
        for (token, why) in cases {
            let e = auth.authenticate(&bearer(&token)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{why}");
            assert!(e.message().contains(why), "{why}: {}", e.message());
        }
        let e = auth.authenticate(&MetadataMap::new()).await.unwrap_err();
        assert!(e.message().contains("bearer token is required"));
    }

    #[tokio::test]
    async fn keys_are_fetched_from_the_jwks_url_and_again_after_rotation() {
        let old = Issuer::new("old");
        let new = Issuer::new("new");
        let set = Arc::new(std::sync::Mutex::new(json!({"keys": [old.jwk.clone()]})));
        let served = set.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = served.lock().unwrap().to_string();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let auth = Authenticator::from_config(&AuthConfig { jwks_url: url, ..cfg() }).await.unwrap();
        assert!(auth.authenticate(&bearer(&old.token(claims("user/*.read")))).await.is_ok());
        // The provider rotates: a token with the new kid makes the service fetch the set again
        // (once the minimum interval has passed).
        *set.lock().unwrap() = json!({"keys": [old.jwk.clone(), new.jwk.clone()]});
        {
            let jwt = auth.jwt.as_ref().unwrap();
            jwt.keys.write().await.fetched = Instant::now() - MIN_REFETCH;
        }
        assert!(auth.authenticate(&bearer(&new.token(claims("user/*.read")))).await.is_ok());

        let e = Authenticator::from_config(&AuthConfig { jwks_url: "http://127.0.0.1:9/jwks".into(), ..cfg() }).await;
        assert!(matches!(e, Err(AuthSetupError::Jwks { .. })));
        let e = Authenticator::from_config(&AuthConfig { issuer: String::new(), ..cfg() }).await;
        assert!(matches!(e, Err(AuthSetupError::Missing("issuer"))));
    }
}
