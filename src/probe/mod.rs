//! One probe cycle of one provider: get (or reuse) a token, call the canary, retry once with a
//! fresh token when a reused one is rejected. Returns what happened; recording it is the job of
//! `metrics`, logging it the job of `scheduler`. Nothing here knows about Prometheus, the web
//! endpoints or the scheduler.
//!
//! - [`token`]: the token request in each dialect and the classification of its answer.
//! - [`client_auth`]: how the client proves itself (every `auth_method`), with its material
//!   prepared once per provider.
//! - [`client_cert`]: the TLS client certificate followed on disk, a renewed pair presented
//!   from the next cycle on.
//! - [`discovery`]: the token endpoint of an `issuer`, from its metadata, cached between
//!   refreshes.
//! - [`canary`]: the API call with the token and its classification.
//! - [`dpop`]: DPoP (RFC 9449) proofs for both, with the provider's key and the servers' nonces.
//! - [`transport`]: outgoing HTTP clients (one rule for which one a provider uses), capped body
//!   reads, transport failure classes.
//! - [`jwt`]: reads (never verifies) a JWT's claims, for its expiry.
//! - [`claims`]: `[token.expect]`, the claims a new token must carry.
//! - [`expiry`]: when credentials and endpoint certificates expire, when a credential last
//!   changed (kept between cycles by the prober's [`expiry::Watch`]).
//! - [`verifier`]: the TLS settings of outgoing clients, recording the chains endpoints present.
//! - [`trace`]: the redacted step-by-step trace `/probe?debug=true` shows.

pub mod canary;
pub mod claims;
pub mod client_auth;
pub mod client_cert;
pub mod discovery;
pub mod dpop;
pub mod expiry;
pub mod jwt;
pub mod token;
pub mod trace;
pub mod transport;
pub mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use url::Url;

use self::canary::{CanaryError, CanaryOutcome, CanaryReason};
use self::client_auth::ClientAuth;
use self::client_cert::TlsIdentity;
use self::discovery::Discovered;
use self::expiry::{Credential, Expiries, TlsPhase, Watch};
use self::token::{TokenError, TokenOutcome, TokenReason};
use self::trace::Trace;
use self::transport::Client;
use crate::closed_set::closed_set;
use crate::config::{GrantKind, ProviderConfig, TokenEndpoint};
use crate::secrets::AccessToken;

/// The token a provider currently holds, kept across cycles.
#[derive(Debug, Clone)]
pub struct HeldToken {
    pub access_token: AccessToken,
    pub lifetime: Option<Duration>,
    pub expires_at: Option<SystemTime>,
    /// The last canary call with this token said it is dead (401 or another status listed in
    /// `token_rejected_status`, or `error="invalid_token"`).
    pub rejected: bool,
    /// It lacks what `[token.expect]` asks: the canary still uses it (to show whether the API
    /// already refuses it), but it is never reused, so every cycle checks a fresh token.
    pub claims_failed: bool,
}

/// What decides whether a held token is valid, without the token itself: kept by the metrics
/// so that validity can be computed when a scrape asks, not when the cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub expires_at: Option<SystemTime>,
    pub rejected: bool,
}

impl Validity {
    /// The token is usable at `now`: not past its expiry (an unknown expiry counts as not
    /// expired) and not rejected by the last canary call. The one definition
    /// `oauth2_token_valid` and `/probe` share.
    pub fn is_valid(self, now: SystemTime) -> bool {
        !self.rejected && self.expires_at.is_none_or(|at| at > now)
    }
}

impl HeldToken {
    pub fn validity(&self) -> Validity {
        Validity {
            expires_at: self.expires_at,
            rejected: self.rejected,
        }
    }

    /// See [`Validity::is_valid`].
    pub fn is_valid(&self, now: SystemTime) -> bool {
        self.validity().is_valid(now)
    }

    /// Whether a new token must be requested before this one is used again.
    fn needs_refresh(&self, refresh_before: Duration, now: SystemTime) -> bool {
        match self.expires_at {
            // Unknown expiry: we cannot tell when it lapses, so never rely on it.
            None => true,
            Some(_) if self.claims_failed => true,
            Some(expires_at) => self.rejected || expires_at <= now + refresh_before,
        }
    }
}

closed_set! {
    /// The phase of a cycle a failure or a back-off belongs to (the `phase` label).
    Phase {
        Token => "token",
        Canary => "canary",
    }
}

closed_set! {
    /// Why a provider's cycles are put off beyond its interval (issue 23): the `reason` label of
    /// `oauth2_probe_backoff`. A refusal of the credentials is named as the
    /// `OAuth2CredentialsRejected` alert names it (the OAuth code; else `invalid_request` on the
    /// password grant, Authlib's answer to a wrong password; else the status), so the alert
    /// keeps its labels when it moves from the failure counters to the back-off; a server that
    /// said "later" is named by its status (`rate_limited`: 429, `http_5xx`: 503).
    HoldOff {
        InvalidClient => "invalid_client",
        InvalidGrant => "invalid_grant",
        UnauthorizedClient => "unauthorized_client",
        InvalidRequest => "invalid_request",
        Http401 => "http_401",
        Http403 => "http_403",
        RateLimited => "rate_limited",
        Http5xx => "http_5xx",
    }
}

/// What a cycle's answers ask of the schedule (issue 23); the scheduler decides when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// The token endpoint refused the credentials: sending them again unchanged can only count
    /// towards a lockout.
    Refused(HoldOff),
    /// A 429 (with or without `Retry-After`), or a 503 with `Retry-After`: the server asked to be
    /// left alone, until `at` when it said so.
    Asked {
        phase: Phase,
        reason: HoldOff,
        at: Option<SystemTime>,
    },
}

/// Whether a token answer refused the credentials, and how the credential alert names it.
fn refusal(outcome: &TokenOutcome, password_grant: bool) -> Option<HoldOff> {
    let Err(error) = &outcome.result else {
        return None;
    };
    match error.reason() {
        TokenReason::InvalidClient => Some(HoldOff::InvalidClient),
        TokenReason::InvalidGrant => Some(HoldOff::InvalidGrant),
        TokenReason::UnauthorizedClient => Some(HoldOff::UnauthorizedClient),
        TokenReason::InvalidRequest if password_grant => Some(HoldOff::InvalidRequest),
        _ => match outcome.status {
            Some(401) => Some(HoldOff::Http401),
            Some(403) => Some(HoldOff::Http403),
            _ => None,
        },
    }
}

/// Whether an answer asked to be left alone: a 429, or a 503 that said until when.
fn asked(phase: Phase, status: Option<u16>, failed: bool, at: Option<SystemTime>) -> Option<Later> {
    let reason = match (status, at) {
        (Some(429), _) => HoldOff::RateLimited,
        (Some(503), Some(_)) => HoldOff::Http5xx,
        _ => return None,
    };
    failed.then_some(Later::Asked { phase, reason, at })
}

/// Everything one cycle did, in order.
#[derive(Debug)]
pub struct CycleReport {
    pub token_requests: Vec<TokenOutcome>,
    pub canary_requests: Vec<CanaryOutcome>,
    /// The canary is configured but no token was held to call it with.
    pub canary_skipped: bool,
    /// Got a token (new or validly reused) and the canary passed or is not configured.
    pub success: bool,
    /// The provider's `grant_type`: alerts need it to read `invalid_request` (a wrong password
    /// on the password grant, as Authlib answers it).
    pub grant: GrantKind,
    pub duration: Duration,
    pub finished_at: SystemTime,
    /// Credential and endpoint certificate expiries, credential change times (issue 13).
    pub expiries: Expiries,
}

/// The failure that decided a cycle: the reason in the metrics' closed vocabulary (which names
/// its phase), the HTTP status if there was one, and the details (scrubbed of secrets where they
/// were made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    pub status: Option<u16>,
    pub detail: String,
}

impl Failure {
    /// The phase that failed (the `phase` label).
    pub fn phase(&self) -> Phase {
        self.reason.phase()
    }
}

/// Why a cycle failed: a token reason or a canary reason, so the phase cannot disagree with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Token(TokenReason),
    Canary(CanaryReason),
}

impl FailureReason {
    pub fn phase(self) -> Phase {
        match self {
            FailureReason::Token(_) => Phase::Token,
            FailureReason::Canary(_) => Phase::Canary,
        }
    }

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Token(reason) => reason.as_str(),
            FailureReason::Canary(reason) => reason.as_str(),
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CycleReport {
    /// Whether a token was issued in this cycle (one that fails `[token.expect]` too): the
    /// credentials work, which ends a back-off.
    pub fn token_issued(&self) -> bool {
        self.token_requests
            .iter()
            .any(|outcome| matches!(&outcome.result, Ok(_) | Err(token::TokenError::Claims(_))))
    }

    /// What this cycle's answers ask of the schedule: `None` for a success and for every other
    /// failure (a timeout, a 5xx without `Retry-After`, a canary refusal), which are probed at
    /// the interval as before, so an outage is measured as precisely (issue 23).
    pub fn later(&self) -> Option<Later> {
        if let Some(last) = self.token_requests.last() {
            if let Some(reason) = refusal(last, self.grant == GrantKind::Password) {
                return Some(Later::Refused(reason));
            }
            if let Some(later) = asked(
                Phase::Token,
                last.status,
                last.result.is_err(),
                last.retry_after,
            ) {
                return Some(later);
            }
        }
        let last = self.canary_requests.last()?;
        asked(
            Phase::Canary,
            last.status,
            last.result.is_err(),
            last.retry_after,
        )
    }

    /// The failure that decided the cycle; `None` when it succeeded.
    pub fn failure(&self) -> Option<Failure> {
        if self.success {
            return None;
        }
        if let Some(outcome) = self.canary_requests.last()
            && let Err(error) = &outcome.result
        {
            // A canary failure after a failed token request is a consequence; report the cause.
            let token_failed = self
                .token_requests
                .last()
                .is_some_and(|t| t.result.is_err());
            if !token_failed {
                return Some(Failure {
                    reason: FailureReason::Canary(error.reason()),
                    status: outcome.status,
                    detail: error.to_string(),
                });
            }
        }
        if let Some(outcome) = self.token_requests.iter().rev().find(|t| t.result.is_err())
            && let Err(error) = &outcome.result
        {
            return Some(Failure {
                reason: FailureReason::Token(error.reason()),
                status: outcome.status,
                detail: error.to_string(),
            });
        }
        if self.canary_skipped {
            let error = CanaryError::NoToken;
            return Some(Failure {
                reason: FailureReason::Canary(error.reason()),
                status: None,
                detail: error.to_string(),
            });
        }
        None
    }
}

/// A provider's probing state: its configuration, HTTP client (with the process's request
/// slots), held token and, with `issuer`, the last good discovery result.
pub struct Prober {
    /// Shared with the scheduler (and a replacement prober after a panic): one copy per provider.
    pub config: Arc<ProviderConfig>,
    client: Client,
    held: Option<HeldToken>,
    watch: Watch,
    /// Client-authentication material prepared from `config`, reused across cycles.
    auth: ClientAuth,
    /// The TLS client certificate files `client` presents, followed for a renewal. Boxed, and
    /// only for providers with a `[tls]` client certificate (BENCHMARKS.md, round seven).
    identity: Option<Box<TlsIdentity>>,
    /// Kept across cycles like the held token (and so across a reload that leaves the provider
    /// unchanged); replaced only by a successful refresh.
    /// Boxed: only providers with an `issuer` have one, and every prober is kept for the
    /// process's life.
    discovered: Option<Box<Discovered>>,
    /// A keyed hash of the credentials the last token request sent (secret, password, key and
    /// certificate files; 0: none yet), to tell whether they changed since (issue 23).
    sent: u64,
    /// With `dpop = true` only (boxed, like `discovered`): the DPoP key and the servers'
    /// nonces, kept across cycles.
    dpop: Option<Box<dpop::Dpop>>,
}

impl Prober {
    pub fn new(config: Arc<ProviderConfig>, client: Client) -> Self {
        Prober {
            identity: config
                .tls
                .client_identity
                .is_some()
                .then(|| Box::new(TlsIdentity::new(&config))),
            dpop: config.token.dpop.as_ref().map(|_| Box::default()),
            config,
            client,
            held: None,
            watch: Watch::default(),
            auth: ClientAuth::default(),
            discovered: None,
            sent: 0,
        }
    }

    /// Whether the credentials a token request would send now differ from those the last one
    /// sent: the secret, password and key sources and the certificate files are read again
    /// (bounded by the timeout, like every read), no server is contacted. What cannot be read
    /// counts as unchanged: the next attempt would not send anything new. The change times of
    /// `oauth2_client_credential_change_timestamp_seconds` move as in a cycle.
    pub async fn credentials_changed(&mut self) -> bool {
        if self.sent == 0 {
            return false;
        }
        let timeout = self.config.timeout;
        // As a cycle reads them (a renewed TLS client certificate is taken up here too).
        self.read_certificate_files(timeout).await;
        let Ok(credentials) = self.auth.read(&self.config.token, timeout).await else {
            // An expired or missing client_assertion_file still shows its state.
            let seen = self.auth.take_assertion_seen();
            self.watch
                .saw_certificate(Credential::ClientAssertion, seen);
            return false;
        };
        let read = credentials.fingerprints();
        self.saw_credentials(read, SystemTime::now());
        self.credential_state(read) != self.sent
    }

    /// Reads the certificate and key files once for everyone who needs them (the client
    /// assertion, the TLS client identity, the expiry watch), and presents a renewed TLS client
    /// certificate from now on.
    async fn read_certificate_files(&mut self, deadline: Duration) -> client_cert::Checked {
        let assertion_certificate = self.auth.read_key_files(&self.config.token, deadline).await;
        self.watch
            .saw_certificate(Credential::ClientCertificate, assertion_certificate);
        let identity = match &mut self.identity {
            Some(identity) => {
                identity
                    .check(&self.config, &mut self.client, deadline)
                    .await
            }
            None => client_cert::Checked::default(),
        };
        self.watch
            .saw_certificate(Credential::TlsClientCertificate, identity.seen);
        identity
    }

    /// Notes the secret and password fingerprints read (`[secret, password, key, assertion]`)
    /// with the expiry watch, for their change times; and `client_assertion_file`'s `exp` and
    /// change as the last read saw them (an expired one too: the gauge shows when it lapsed).
    fn saw_credentials(&mut self, read: [u64; 4], now: SystemTime) {
        let [secret, password, _key, _assertion] = read;
        self.watch.saw(Credential::ClientSecret, secret, now);
        self.watch.saw(Credential::Password, password, now);
        let assertion = self.auth.take_assertion_seen();
        self.watch
            .saw_certificate(Credential::ClientAssertion, assertion);
    }

    /// One keyed hash of what a token request sends: the read values' fingerprints and the
    /// certificate files'.
    fn credential_state(&self, read: [u64; 4]) -> u64 {
        let mut bytes = Vec::with_capacity(6 * 8);
        for value in read.iter().chain(self.watch.file_fingerprints().iter()) {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        self::expiry::fingerprint(&bytes)
    }

    pub fn held(&self) -> Option<&HeldToken> {
        self.held.as_ref()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one cycle. Its length is bounded: at most two token and two canary requests, and
    /// with `issuer` a discovery fetch before a token request when one is due (two documents at
    /// most), each limited by the provider's timeout.
    pub async fn run_cycle(&mut self, mut trace: Option<&mut Trace>) -> CycleReport {
        let started = Instant::now();
        if let Some(trace) = trace.as_deref_mut() {
            self.client.add_secrets(trace.always_scrub());
        }
        let mut token_requests = Vec::new();
        let mut canary_requests = Vec::new();
        let mut canary_skipped = false;
        // Certificate files first, each read once for its user and the watch: their notAfter
        // and change show even when the token fails. A renewed TLS client certificate is
        // presented from this cycle on.
        let identity = self.read_certificate_files(self.config.timeout).await;
        identity.trace(trace.as_deref_mut());
        // The DPoP key likewise, for the token request and the canary call alike.
        let dpop_key = self.load_dpop_key(trace.as_deref_mut()).await;

        let must_request = match &self.held {
            // A token bound to a key no longer held cannot be presented.
            Some(_) if dpop_key == Ok(true) => true,
            Some(held) if self.config.token.reuse => {
                held.needs_refresh(self.config.token.refresh_before, SystemTime::now())
            }
            _ => true,
        };
        let mut token_ok = !must_request;
        let failure = identity
            .failure
            .or_else(|| dpop_key.err().map(TokenError::from));
        if let Some(error) = failure {
            // Not sent with the previous certificate: what is on disk is what must work.
            token_requests.push(TokenOutcome {
                duration: Duration::ZERO,
                status: None,
                certificate: None,
                credentials: [0; 4],
                retry_after: None,
                result: Err(error),
            });
            token_ok = false;
        } else if must_request {
            token_ok = self
                .refresh(&mut token_requests, "token request", trace.as_deref_mut())
                .await;
        } else if let Some(trace) = trace.as_deref_mut() {
            trace.section("token reused");
            trace
                .line("the held token is not within refresh_before of its expiry; no request sent");
        }

        let mut canary_ok = true;
        if self.config.canary.is_some() {
            if let Some(trace) = trace.as_deref_mut() {
                trace.section("canary request");
            }
            match self.call_canary(trace.as_deref_mut()).await {
                None => {
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.line("skipped: no token is held (reason no_token)");
                    }
                    canary_skipped = true;
                    canary_ok = false;
                }
                Some(mut outcome) => {
                    // A reused token may have been revoked early: get a fresh one and try once
                    // more, so a revocation is not mistaken for broken credentials.
                    let rejected = |outcome: &CanaryOutcome| {
                        outcome
                            .result
                            .as_ref()
                            .is_err_and(CanaryError::rejects_token)
                    };
                    if rejected(&outcome) && token_requests.is_empty() {
                        token_ok = self
                            .refresh(
                                &mut token_requests,
                                "token request (retry: the reused token was rejected)",
                                trace.as_deref_mut(),
                            )
                            .await;
                        if let Some(trace) = trace.as_deref_mut() {
                            trace.section("canary request (retry with the fresh token)");
                        }
                        if token_ok && let Some(retried) = self.call_canary(trace).await {
                            canary_requests.push(outcome);
                            outcome = retried;
                        }
                    }
                    canary_ok = outcome.result.is_ok();
                    if let Some(held) = &mut self.held {
                        held.rejected = rejected(&outcome);
                    }
                    canary_requests.push(outcome);
                }
            }
        }

        for outcome in &canary_requests {
            let expiry = self.client.chain_expiry(outcome.certificate);
            self.watch.saw_endpoint(TlsPhase::Canary, expiry);
        }
        CycleReport {
            token_requests,
            canary_requests,
            canary_skipped,
            success: token_ok && canary_ok,
            grant: self.config.token.grant.kind(),
            duration: started.elapsed(),
            finished_at: SystemTime::now(),
            expiries: self.watch.report(&self.config),
        }
    }

    /// With `dpop = true`: the DPoP key for this cycle (see [`dpop::Dpop::load`]); whether it
    /// changed. `Ok(false)` without DPoP.
    async fn load_dpop_key(&mut self, trace: Option<&mut Trace>) -> Result<bool, dpop::DpopError> {
        let (Some(dpop), Some(config)) = (&mut self.dpop, &self.config.token.dpop) else {
            return Ok(false);
        };
        let loaded = dpop.load(config, self.config.timeout).await;
        if let Some(trace) = trace {
            trace.section("DPoP key");
            match (&loaded, dpop.thumbprint()) {
                (Ok(changed), Some(jkt)) => trace.line(format!(
                    "{} ({}); thumbprint (jkt) {jkt}",
                    match &config.key_file {
                        Some(path) => format!("dpop_key_file {}", path.display()),
                        None => "generated at start".to_string(),
                    },
                    if *changed {
                        "new this cycle"
                    } else {
                        "unchanged"
                    },
                )),
                (Ok(_), None) => {}
                (Err(error), _) => trace.line(format!("unusable: {error}")),
            }
        }
        loaded
    }

    /// Calls the canary with the held token; `None` when no token is held (or no canary is set).
    /// The call holds a request slot; waiting for one counts against the timeout.
    async fn call_canary(&mut self, mut trace: Option<&mut Trace>) -> Option<CanaryOutcome> {
        let canary_config = self.config.canary.as_ref()?;
        let held = self.held.as_ref()?;
        let started = Instant::now();
        // Worked out only when someone reads it (a trace, a failure); see `refresh`.
        let route = || self.client.route(&canary_config.url);
        if let Some(trace) = trace.as_deref_mut() {
            trace.line(format!("proxy: {}", route()));
        }
        let slot = match self.client.slots.acquire(self.config.timeout).await {
            Ok(slot) => slot,
            Err(busy) => {
                trace_busy(trace, &busy);
                return Some(CanaryOutcome {
                    duration: started.elapsed(),
                    status: None,
                    certificate: None,
                    retry_after: None,
                    result: Err(busy.into()),
                });
            }
        };
        let mut outcome = self::canary::call(
            &self.client,
            canary_config,
            &held.access_token,
            self.dpop.as_deref_mut(),
            slot.remaining,
            trace.as_deref_mut(),
        )
        .await;
        drop(slot);
        // Through a proxy, failures name it; a 407 is the proxy's answer, not the API's.
        outcome.result = match outcome.result {
            Err(CanaryError::Transport(error)) => Err(route().explain(error).into()),
            Err(error) => Err(match route().proxy_refused(outcome.status) {
                Some(refused) => {
                    trace_refused(trace, &refused);
                    refused.into()
                }
                None => error,
            }),
            ok => ok,
        };
        Some(outcome)
    }

    /// The token endpoint for this request: the configured `url`, or the `token_endpoint` of
    /// the issuer's metadata, fetched when there is none yet or its refresh is due (the fetch
    /// holds a request slot, like every request). A failed refresh keeps the last good endpoint
    /// with a warning; with none, the cycle fails in the token phase, reason `discovery`.
    async fn token_endpoint(&mut self, mut trace: Option<&mut Trace>) -> Result<Url, TokenOutcome> {
        let discovery = match &self.config.token.endpoint {
            TokenEndpoint::Url(url) => return Ok(url.clone()),
            TokenEndpoint::Discovery(discovery) => discovery,
        };
        let now = Instant::now();
        if let Some(found) = &self.discovered
            && !found.is_due(discovery.refresh, now)
        {
            if let Some(trace) = trace.as_deref_mut() {
                trace.section("discovery");
                trace.line(format!(
                    "token endpoint {} from the metadata fetched {}s ago ({}); next refresh after discovery_refresh = {}",
                    found.token_endpoint,
                    now.duration_since(found.fetched_at).as_secs(),
                    found.source,
                    humantime::format_duration(discovery.refresh),
                ));
            }
            return Ok(found.token_endpoint.clone());
        }
        // Both metadata URLs share the issuer's host, so one route stands for both.
        let [openid, _] = self::discovery::metadata_urls(&discovery.issuer_url);
        let route = self.client.route(&openid);
        if let Some(trace) = trace.as_deref_mut() {
            trace.section("discovery");
            trace.line(format!("proxy: {route}"));
        }
        let started = Instant::now();
        let result = match self.client.slots.acquire(self.config.timeout).await {
            Ok(slot) => {
                let result = self::discovery::discover(
                    &self.client,
                    &route,
                    discovery,
                    &self.config.token,
                    slot.remaining,
                    trace.as_deref_mut(),
                )
                .await
                .map_err(TokenError::from);
                drop(slot);
                result
            }
            Err(busy) => {
                trace_busy(trace.as_deref_mut(), &busy);
                Err(TokenError::Transport(busy))
            }
        };
        match (result, &self.discovered) {
            (Ok(found), _) => {
                let expiry = self.client.chain_expiry(found.certificate);
                self.watch.saw_endpoint(TlsPhase::Discovery, expiry);
                let endpoint = found.token_endpoint.clone();
                self.discovered = Some(Box::new(found));
                Ok(endpoint)
            }
            (Err(error), Some(last_good)) => {
                tracing::warn!(
                    provider = %self.config.name,
                    error = %error,
                    token_endpoint = %last_good.token_endpoint,
                    "discovery refresh failed; keeping the last good token endpoint (retried next cycle)"
                );
                if let Some(trace) = trace {
                    trace.line(format!(
                        "refresh failed; keeping the last good token endpoint {}",
                        last_good.token_endpoint
                    ));
                }
                Ok(last_good.token_endpoint.clone())
            }
            (Err(error), None) => Err(TokenOutcome {
                duration: started.elapsed(),
                status: None,
                certificate: None,
                credentials: [0; 4],
                retry_after: None,
                result: Err(error),
            }),
        }
    }

    /// Requests a token; on success it replaces the held one, on failure the held one is kept
    /// (it may still be valid).
    async fn refresh(
        &mut self,
        outcomes: &mut Vec<TokenOutcome>,
        title: &str,
        mut trace: Option<&mut Trace>,
    ) -> bool {
        let endpoint = match self.token_endpoint(trace.as_deref_mut()).await {
            Ok(endpoint) => endpoint,
            Err(outcome) => {
                outcomes.push(outcome);
                return false;
            }
        };
        // Worked out only when someone reads it (a trace, a failure): with the environment's
        // proxy rules it reads the variables again.
        let route = || self.client.route(&endpoint);
        if let Some(trace) = trace.as_deref_mut() {
            trace.section(title);
            trace.line(format!("proxy: {}", route()));
        }
        // The request holds a request slot; waiting for one counts against the timeout.
        let started = Instant::now();
        let mut outcome = match self.client.slots.acquire(self.config.timeout).await {
            Ok(slot) => {
                let outcome = self::token::request_token(
                    &self.client,
                    &self.config.token,
                    &mut self.auth,
                    self.dpop.as_deref_mut(),
                    &endpoint,
                    slot.remaining,
                    trace.as_deref_mut(),
                )
                .await;
                drop(slot);
                outcome
            }
            Err(busy) => {
                trace_busy(trace.as_deref_mut(), &busy);
                TokenOutcome {
                    duration: started.elapsed(),
                    status: None,
                    certificate: None,
                    credentials: [0; 4],
                    retry_after: None,
                    result: Err(TokenError::Transport(busy)),
                }
            }
        };
        // Through a proxy, failures name it; a 407 is the proxy's answer, not the server's.
        outcome.result = match outcome.result {
            Err(TokenError::Transport(error)) => Err(TokenError::Transport(route().explain(error))),
            Err(error) => Err(match route().proxy_refused(outcome.status) {
                Some(refused) => {
                    trace_refused(trace.as_deref_mut(), &refused);
                    TokenError::Transport(refused)
                }
                None => error,
            }),
            ok => ok,
        };
        let now = SystemTime::now();
        self.saw_credentials(outcome.credentials, now);
        if outcome.credentials != [0; 4] {
            self.sent = self.credential_state(outcome.credentials);
        }
        let expiry = self.client.chain_expiry(outcome.certificate);
        self.watch.saw_endpoint(TlsPhase::Token, expiry);
        let ok = match &outcome.result {
            Ok(issued) => {
                let claims = match &self.config.token.expect {
                    Some(expect) => self::claims::check(
                        expect,
                        issued.access_token.expose(),
                        self.identity.as_deref().and_then(TlsIdentity::thumbprint),
                    ),
                    None => Ok(()),
                };
                self.held = Some(HeldToken {
                    access_token: issued.access_token.clone(),
                    lifetime: issued.lifetime,
                    expires_at: issued.expires_at,
                    rejected: false,
                    claims_failed: claims.is_err(),
                });
                match claims {
                    Ok(()) => true,
                    Err(mismatch) => {
                        if let Some(trace) = trace {
                            trace.line(format!("[token.expect] failed, reason claims: {mismatch}"));
                        }
                        outcome.result = Err(TokenError::Claims(mismatch));
                        false
                    }
                }
            }
            Err(_) => false,
        };
        outcomes.push(outcome);
        ok
    }
}

/// The trace's account of a 407 answer: the request code classified it as the server's answer;
/// it is the proxy's, and counts as `connect`.
fn trace_refused(trace: Option<&mut Trace>, refused: &transport::TransportError) {
    if let Some(trace) = trace {
        trace.line(format!(
            "the 407 came from the proxy, not the server: counted as reason connect: {refused}"
        ));
    }
}

/// The trace's account of a request never sent for want of a slot.
fn trace_busy(trace: Option<&mut Trace>, busy: &transport::TransportError) {
    if let Some(trace) = trace {
        trace.line(format!("not sent: {busy} (reason exporter_busy)"));
    }
}
