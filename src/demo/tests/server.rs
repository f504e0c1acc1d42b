//! The server itself: the token store's uniqueness and bounds, and stopping when cancelled.

use super::*;

#[test]
fn tokens_are_unique_and_the_store_is_bounded() {
    let state = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), credential());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let token = state.random_string();
        assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
        assert!(seen.insert(token), "duplicate token");
    }
    // Another server (other keys) does not produce the same sequence.
    let other = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), credential());
    assert!(!seen.contains(&other.random_string()));

    let expired: Vec<String> = (0..10)
        .map(|_| state.issue_opaque(Api::Cube, Duration::ZERO))
        .collect();
    {
        let tokens = state.tokens.lock().unwrap();
        assert!(expired.iter().all(|token| tokens.contains_key(token)));
    }
    for _ in 0..PRUNE_EVERY {
        state.issue_opaque(Api::Cube, ONE_HOUR);
    }
    {
        let tokens = state.tokens.lock().unwrap();
        assert!(
            expired.iter().all(|token| !tokens.contains_key(token)),
            "expired tokens are swept within PRUNE_EVERY inserts"
        );
    }
    let first_live = state.issue_opaque(Api::Cube, Duration::from_secs(60));
    for _ in 0..MAX_TOKENS {
        state.issue_opaque(Api::Cube, ONE_HOUR);
    }
    let tokens = state.tokens.lock().unwrap();
    assert!(tokens.len() <= MAX_TOKENS, "bounded: {}", tokens.len());
    assert!(tokens.len() > MAX_TOKENS - MAX_TOKENS / 8 - 2);
    assert!(
        !tokens.contains_key(&first_live),
        "then the one closest to expiry"
    );
}

#[tokio::test]
async fn server_stops_when_cancelled() {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = DemoServer::start(cancel.clone(), &tracker).await.unwrap();
    let addr = server.addr();
    tokio::net::TcpStream::connect(addr).await.unwrap();
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(format!("{server:?}").contains(&addr.to_string()));
}
