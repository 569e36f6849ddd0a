//! Access tokens of an external OpenID Connect issuer, verified against a JWKS file.

use std::collections::HashMap;

use ally::auth::oidc::OidcSettings;
use ally::proto::ally::v1 as pb;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::json;
use tonic::Code;

use ally::bootstrap::Bootstrap;
use ally::db::{Database, PoolOptions, migrations};

use crate::backend_tests;
use crate::common::clients::{Credential, tenants};
use crate::common::{TestBackend, TestDatabase, connect, init_logging, test_settings};

backend_tests!(external_tokens, keys_from_url_rotate);

const ISSUER: &str = "https://login.example.test/directory/v2.0";
const AUDIENCE: &str = "ally-app";
const DIRECTORY: &str = "directory-1";

/// An EC P-256 signing key and its public JWK.
struct Signer {
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn signer(kid: &str) -> Signer {
    let pair = KeyPair::generate().expect("EC key");
    let raw = pair.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    Signer { key, jwk }
}

fn token(signer: &Signer, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, &signer.key).expect("sign")
}

fn claims(email: &str, extra: serde_json::Value) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "external-subject", "tid": DIRECTORY,
        "email": email, "iat": now, "nbf": now - 5, "exp": now + 600,
    });
    if let (Some(base), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    claims
}

async fn external_tokens(backend: TestBackend) {
    init_logging();
    let trusted = signer("k1");
    let stranger = signer("k1");
    let test_db = TestDatabase::create(backend).await;
    let jwks = test_db.dir().join("jwks.json");
    let symmetric = json!({"kty": "oct", "kid": "sym", "k": URL_SAFE_NO_PAD.encode(SYMMETRIC)});
    std::fs::write(&jwks, json!({"keys": [trusted.jwk, symmetric]}).to_string()).expect("JWKS");

    // The tenant must exist before the server starts, because the mapping names its id.
    let mut settings = test_settings(&test_db.url, test_db.dir());
    let database = Database::connect(
        settings.database_url().unwrap(),
        &PoolOptions::from(&settings.database),
    )
    .await
    .expect("database");
    migrations::execute(&database, migrations::Command::Run)
        .await
        .expect("migrate");
    let created = ally::bootstrap::create(
        &database,
        &Bootstrap {
            tenant_name: "Federated".into(),
            subdomain: "federated".into(),
            owner_email: "Owner@Federated.example".into(),
            owner_name: "Owner".into(),
        },
    )
    .await
    .expect("bootstrap");
    settings.auth.oidc = Some(OidcSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_file: Some(jwks),
        jwks_url: None,
        tenant_claim: "tid".into(),
        tenant_map: HashMap::from([(DIRECTORY.to_string(), created.tenant.id.clone())]),
        email_claim: "email".into(),
        role_claim: "roles".into(),
        operator_roles: vec!["Ally.Operator".into()],
    });
    let server = ally::server::start(settings).await.expect("server starts");
    let channel = connect(server.local_addr()).await;
    let get_own = |token: String| {
        let channel = channel.clone();
        async move {
            tenants(&channel, Credential::bearer(&token))
                .get_tenant(pb::GetTenantRequest::default())
                .await
        }
    };

    let member = token(&trusted, "k1", claims("owner@federated.example", json!({})));
    let own = get_own(member)
        .await
        .expect("a mapped member reads their tenant");
    assert_eq!(
        own.into_inner().tenant.map(|t| t.id),
        Some(created.tenant.id.clone())
    );

    let operator = token(
        &trusted,
        "k1",
        claims("op@example.test", json!({"roles": ["Ally.Operator"]})),
    );
    tenants(&channel, Credential::bearer(&operator))
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("an external operator lists tenants");

    let now = chrono::Utc::now().timestamp();
    let rejected = [
        (
            "unknown key",
            token(
                &stranger,
                "k1",
                claims("owner@federated.example", json!({})),
            ),
        ),
        (
            "unknown kid",
            token(&trusted, "k9", claims("owner@federated.example", json!({}))),
        ),
        (
            "wrong issuer",
            token(
                &trusted,
                "k1",
                claims(
                    "owner@federated.example",
                    json!({"iss": "https://evil.test"}),
                ),
            ),
        ),
        (
            "wrong audience",
            token(
                &trusted,
                "k1",
                claims("owner@federated.example", json!({"aud": "other"})),
            ),
        ),
        (
            "expired",
            token(
                &trusted,
                "k1",
                claims("owner@federated.example", json!({"exp": now - 3600})),
            ),
        ),
        (
            "unmapped directory",
            token(
                &trusted,
                "k1",
                claims("owner@federated.example", json!({"tid": "other"})),
            ),
        ),
        (
            "no such user",
            token(
                &trusted,
                "k1",
                claims("nobody@federated.example", json!({})),
            ),
        ),
        ("symmetric key from the set", symmetric_token()),
    ];
    for (case, token) in rejected {
        let status = get_own(token).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }

    server.shutdown().await.expect("clean shutdown");
}

const SYMMETRIC: &[u8] = b"0123456789abcdef0123456789abcdef";

/// An HS256 token signed with the symmetric key that the JWKS file lists, which must not be
/// trusted.
fn symmetric_token() -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("sym".into());
    let key = EncodingKey::from_secret(SYMMETRIC).expect("key");
    jsonwebtoken::encode(&header, &claims("owner@federated.example", json!({})), &key)
        .expect("sign")
}

/// Serves `body` to every HTTP request on 127.0.0.1 until the test ends.
async fn serve_jwks(body: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.lock().expect("body").clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}/keys")
}

async fn keys_from_url_rotate(backend: TestBackend) {
    init_logging();
    let first = signer("k1");
    let second = signer("k2");
    let body = std::sync::Arc::new(std::sync::Mutex::new(
        json!({"keys": [first.jwk]}).to_string(),
    ));
    let url = serve_jwks(body.clone()).await;

    let test_db = TestDatabase::create(backend).await;
    let mut settings = test_settings(&test_db.url, test_db.dir());
    let database = Database::connect(
        settings.database_url().unwrap(),
        &PoolOptions::from(&settings.database),
    )
    .await
    .expect("database");
    migrations::execute(&database, migrations::Command::Run)
        .await
        .expect("migrate");
    let created = ally::bootstrap::create(
        &database,
        &Bootstrap {
            tenant_name: "Rotating".into(),
            subdomain: "rotating".into(),
            owner_email: "owner@rotating.example".into(),
            owner_name: "Owner".into(),
        },
    )
    .await
    .expect("bootstrap");
    settings.auth.oidc = Some(OidcSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_file: None,
        jwks_url: Some(url),
        tenant_claim: "tid".into(),
        tenant_map: HashMap::from([(DIRECTORY.to_string(), created.tenant.id.clone())]),
        email_claim: "email".into(),
        role_claim: "roles".into(),
        operator_roles: Vec::new(),
    });
    let server = ally::server::start(settings).await.expect("server starts");
    let channel = connect(server.local_addr()).await;
    let get_own = |token: String| {
        let channel = channel.clone();
        async move {
            tenants(&channel, Credential::bearer(&token))
                .get_tenant(pb::GetTenantRequest::default())
                .await
        }
    };

    get_own(token(
        &first,
        "k1",
        claims("owner@rotating.example", json!({})),
    ))
    .await
    .expect("a token signed with the fetched key works");

    // The issuer rotates to a new key; the first token naming it makes Ally fetch again.
    *body.lock().unwrap() = json!({"keys": [second.jwk]}).to_string();
    get_own(token(
        &second,
        "k2",
        claims("owner@rotating.example", json!({})),
    ))
    .await
    .expect("a token signed with the rotated key works");
    server.shutdown().await.expect("clean shutdown");
}
