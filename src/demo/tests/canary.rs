//! The canary APIs: live tokens issued for their API only.

use super::*;

#[tokio::test]
async fn canary_accepts_only_live_tokens_issued_for_its_api() {
    let demo = start().await;
    let scope = format!("{OKQ8_RESOURCE}/.default");
    let reply = demo
        .form(
            &demo.okq8_token_path(),
            &okq8_form(OKQ8_CLIENT.secret, &scope),
        )
        .await;
    let okq8 = access_token(&reply, "access_token");
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&okq8)).await.status, 200);

    let reply = demo.get(OKQ8_CANARY_PATH, None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"demo\"");
    let unknown = demo.server.state.random_string();
    let reply = demo.get(OKQ8_CANARY_PATH, Some(&unknown)).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // A valid token for another API opens nothing here.
    assert_eq!(demo.get(CUBE_CANARY_PATH, Some(&okq8)).await.status, 401);
    // Expired: issued with no lifetime left.
    let expired = demo.server.state.issue_opaque(Api::Okq8, Duration::ZERO);
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&expired)).await.status, 401);
    // Canary paths are GET only; token paths POST only; others 404.
    let post = demo.post(OKQ8_CANARY_PATH).bearer_auth(&okq8);
    let reply = demo.send(post).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET");
    let reply = demo.get(CUBE_TOKEN_PATH, None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
    assert_eq!(demo.get("/nope", Some(&okq8)).await.status, 404);
}
