//! Voice quality estimate: the ITU-T G.107 E-model, simplified to the terms a loopback or LAN
//! benchmark can influence (delay, codec, packet loss), and the R -> MOS mapping.
//!
//! R = R0 - Is - Id - Ie,eff + A with the G.107 defaults folded into 93.2 (R0 - Is), A = 0,
//! Id from the mouth-to-ear delay Ta in ms by the usual piecewise fit of G.107's Idd
//! (0.024 Ta + 0.11 (Ta - 177.3) for Ta > 177.3), and Ie,eff = Ie + (95 - Ie) Ppl / (Ppl /
//! BurstR + Bpl) with Ie and Bpl from G.113 Appendix I (G.711 with PLC: Ie 0, Bpl 25.1;
//! G.729A: Ie 11, Bpl 19) and random loss (BurstR = 1).
//!
//! Mouth-to-ear delay = measured one-way network delay + packetisation (20 ms) + the codec's
//! algorithmic delay + a jitter buffer of max(20 ms, 2 x measured jitter).

use super::ua::Codec;

/// An E-model result.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub r_factor: f64,
    pub mos: f64,
    /// The mouth-to-ear delay the estimate assumed, ms.
    pub mouth_to_ear_ms: f64,
}

/// Estimates R and MOS from the measured one-way network delay, jitter (ms) and loss (%).
pub fn estimate(codec: Codec, network_delay_ms: f64, jitter_ms: f64, loss_pct: f64) -> Estimate {
    let (ie, bpl, algo_ms) = match codec {
        Codec::Pcmu | Codec::Pcma => (0.0, 25.1, 0.0),
        Codec::G729 => (11.0, 19.0, 15.0),
    };
    let ta = network_delay_ms.max(0.0) + 20.0 + algo_ms + (2.0 * jitter_ms).max(20.0);
    let id = 0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 };
    let ppl = loss_pct.clamp(0.0, 100.0);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    Estimate {
        r_factor: r,
        mos: mos(r),
        mouth_to_ear_ms: ta,
    }
}

/// G.107 Annex B: MOS (conversational, estimated) from R.
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// The `q`-quantile (0..=1) of `v` (sorted in place); `None` when empty.
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(v[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_on_a_clean_lan_is_toll_quality() {
        let e = estimate(Codec::Pcmu, 0.5, 0.2, 0.0);
        assert!((e.r_factor - 92.2).abs() < 0.1, "{e:?}");
        assert!(e.mos > 4.3 && e.mos < 4.5, "{e:?}");
    }

    #[test]
    fn g729_costs_its_equipment_impairment() {
        let a = estimate(Codec::Pcmu, 1.0, 0.0, 0.0);
        let b = estimate(Codec::G729, 1.0, 0.0, 0.0);
        assert!((a.r_factor - b.r_factor - 11.36).abs() < 0.1, "{a:?} {b:?}");
        assert!(b.mos > 3.9 && b.mos < 4.2, "{b:?}");
    }

    #[test]
    fn loss_and_delay_lower_the_score() {
        let clean = estimate(Codec::Pcma, 1.0, 0.0, 0.0).r_factor;
        let lossy = estimate(Codec::Pcma, 1.0, 0.0, 5.0).r_factor;
        assert!((clean - lossy - 95.0 * 5.0 / 30.1).abs() < 0.01);
        let slow = estimate(Codec::Pcma, 300.0, 0.0, 0.0);
        assert!(slow.r_factor < 80.0, "{slow:?}");
    }

    #[test]
    fn mos_mapping_endpoints_and_known_points() {
        assert_eq!(mos(-3.0), 1.0);
        assert_eq!(mos(100.0), 4.5);
        assert!((mos(93.2) - 4.41).abs() < 0.01);
        assert!((mos(50.0) - 2.58).abs() < 0.01);
    }

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 1.0), Some(5.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
