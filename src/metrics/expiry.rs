//! The expiry and rotation series of issue 13, written from each provider's [`Expiries`]:
//! when a client credential stops working, when its value last changed, and when the
//! certificate chain an endpoint presented expires. Absolute Unix times, as cert-manager and
//! x509-certificate-exporter export them: alerts and dashboards compute what is left.

use crate::config::SeriesLabel;
use crate::probe::expiry::{Credential, Expiries, TlsPhase};

use super::snapshot::{Families, Kind, Snapshot};

/// Writes the three families, each only with the series that have a value.
pub(super) fn write(out: &mut dyn Families, snapshot: &Snapshot) {
    let credentials = Credential::ALL.map(Credential::as_str);
    let phases = TlsPhase::ALL.map(TlsPhase::as_str);
    family(
        out,
        snapshot,
        (
            "oauth2_client_credential_expiry_timestamp_seconds",
            SeriesLabel::Credential,
            "When the client credential stops working (Unix time): the configured client_secret_expires or password_expires, the notAfter of a certificate file (re-read when it changes), or the exp of the JWT in client_assertion_file as the last token request read it.",
        ),
        &credentials,
        |e| &e.credential,
    );
    family(
        out,
        snapshot,
        (
            "oauth2_client_credential_change_timestamp_seconds",
            SeriesLabel::Credential,
            "When the exporter last saw the credential's value change (its first sighting, at start, counts); compared by a keyed hash held in memory only.",
        ),
        &credentials,
        |e| &e.changed,
    );
    family(
        out,
        snapshot,
        (
            "oauth2_tls_certificate_expiry_timestamp_seconds",
            SeriesLabel::Phase,
            "Earliest notAfter (Unix time) of the certificate chain the endpoint presented on the last request of this phase answered over https.",
        ),
        &phases,
        |e| &e.tls,
    );
}

/// One gauge family labelled `label` (one of `values`) and `provider`; 0 is "no value".
fn family(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, label, help): (&str, SeriesLabel, &str),
    values: &[&str],
    get: impl Fn(&Expiries) -> &[u64],
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        for (value, at) in values.iter().zip(get(&series.expiries)) {
            if *at == 0 {
                continue;
            }
            if !wrote_header {
                out.family(name, Kind::Gauge, help);
                wrote_header = true;
            }
            out.sample(
                name,
                &[(label, value), (SeriesLabel::Provider, provider)],
                &series.labels,
                *at as f64,
            );
        }
        out.series_done();
    }
}
