//! The file-descriptor budget of `serve`: all four services share one process and one
//! descriptor table, so each gets a share of it and its caps are kept within that share.
//! Then one service running out of slots refuses its own clients (and says so) and
//! never makes another fail with "too many open files".
//!
//! Budget = the soft limit (raised to the hard limit at start) minus [`RESERVE`] for the
//! database, listeners, logs and the identity files. Shares: TFTP 30 %, TVS 30 %, HTTP
//! 20 %, CAPF 20 %. A TFTP transfer or an HTTP connection may hold two descriptors (its
//! socket and a static file), a CAPF handshake or session and a TVS connection one.

/// Descriptors kept out of the services' shares.
pub const RESERVE: u64 = 128;

/// The caps each service would like (from the config or the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// TFTP transfers at once.
    pub tftp_transfers: usize,
    /// HTTP connections at once.
    pub http_connections: usize,
    /// CAPF TLS handshakes in progress.
    pub capf_handshakes: usize,
    /// CAPF sessions.
    pub capf_sessions: usize,
    /// TVS connections (sessions and those waiting for one).
    pub tvs_connections: usize,
}

/// The caps that fit, and what was lowered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The descriptors the plan divides.
    pub limit: u64,
    /// The caps to use.
    pub caps: Wanted,
    /// One line per lowered cap: "TFTP transfers 1024 → 134".
    pub lowered: Vec<String>,
}

fn share(budget: u64, percent: u64, per_unit: u64) -> usize {
    usize::try_from(budget * percent / 100 / per_unit)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Fit `wanted` into a descriptor `limit`.
pub fn plan(limit: u64, wanted: Wanted) -> Plan {
    let budget = limit.saturating_sub(RESERVE).max(16);
    let mut lowered = Vec::new();
    let mut fit = |what: &str, want: usize, max: usize| -> usize {
        if want > max {
            lowered.push(format!("{what} {want} → {max}"));
            max
        } else {
            want
        }
    };
    let tftp = fit(
        "TFTP transfers",
        wanted.tftp_transfers,
        share(budget, 30, 2),
    );
    let http = fit(
        "HTTP connections",
        wanted.http_connections,
        share(budget, 20, 2),
    );
    let tvs = fit(
        "TVS connections",
        wanted.tvs_connections,
        share(budget, 30, 1),
    );
    // CAPF's share is divided between handshakes and sessions in the wanted proportion.
    let capf_share = share(budget, 20, 1);
    let capf_want = wanted.capf_handshakes + wanted.capf_sessions;
    let (hs, sess) = if capf_want > capf_share {
        let hs = (capf_share * wanted.capf_handshakes / capf_want.max(1)).max(1);
        let sess = capf_share.saturating_sub(hs).max(1);
        (
            fit("CAPF TLS handshakes", wanted.capf_handshakes, hs),
            fit("CAPF sessions", wanted.capf_sessions, sess),
        )
    } else {
        (wanted.capf_handshakes, wanted.capf_sessions)
    };
    Plan {
        limit,
        caps: Wanted {
            tftp_transfers: tftp,
            http_connections: http,
            capf_handshakes: hs,
            capf_sessions: sess,
            tvs_connections: tvs,
        },
        lowered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Wanted = Wanted {
        tftp_transfers: 1024,
        http_connections: 1024,
        capf_handshakes: 256,
        capf_sessions: 1000,
        tvs_connections: 12_000,
    };

    fn descriptors(c: &Wanted) -> u64 {
        (2 * c.tftp_transfers
            + 2 * c.http_connections
            + c.capf_handshakes
            + c.capf_sessions
            + c.tvs_connections) as u64
    }

    #[test]
    fn the_defaults_fit_the_systemd_unit_limit() {
        let p = plan(65_536, DEFAULTS);
        assert_eq!(p.caps, DEFAULTS);
        assert!(p.lowered.is_empty());
    }

    #[test]
    fn a_small_limit_lowers_the_caps_to_fit() {
        let p = plan(1024, DEFAULTS);
        // 896 descriptors: TFTP 268 / 2, HTTP 179 / 2, TVS 268, CAPF 179.
        assert_eq!(p.caps.tftp_transfers, 134);
        assert_eq!(p.caps.http_connections, 89);
        assert_eq!(p.caps.tvs_connections, 268);
        assert_eq!(p.caps.capf_handshakes + p.caps.capf_sessions, 179);
        assert!(descriptors(&p.caps) + RESERVE <= 1024);
        assert_eq!(p.lowered.len(), 5);
        assert!(p.lowered[0].starts_with("TFTP transfers 1024 → 134"));
    }

    #[test]
    fn every_plan_fits_its_limit() {
        for limit in [256u64, 1000, 4096, 20_000, 65_536, 1 << 20] {
            let p = plan(limit, DEFAULTS);
            assert!(
                descriptors(&p.caps) + RESERVE <= limit.max(RESERVE + 16) + 8,
                "{limit}: {p:?}"
            );
        }
    }
}
