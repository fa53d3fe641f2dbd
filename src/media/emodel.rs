//! Estimated call quality by the ITU-T G.107 E-model: the transmission rating R from the
//! one-way delay and the effective packet loss for the codec, and its mapping to a MOS
//! (conversational quality, 1-4.5).
//!
//! * `R = R0 - Id - Ie,eff` with G.107's default values for everything the phone cannot know
//!   (room noise, loudness ratings, sidetone, echo loss): `R0 = 93.2`, the advantage factor
//!   `A = 0`.
//! * The delay impairment `Id` uses the widely used reduction of G.107's formulas for those
//!   defaults (Cole & Rosenbluth, 2001): `Id = 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3)`.
//! * `Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)` (G.107 §3.6), with `Ie` and `Bpl`
//!   from ITU-T G.113 Appendix I: G.711 with its Appendix I concealment `Ie = 0`,
//!   `Bpl = 25.1`. G.722 is rated on the same narrowband scale as G.711 (G.107.1's wideband
//!   scale is not used). Opus has no ITU-T values: `Ie = 0`, `Bpl = 25.1` as well (frames
//!   rebuilt from its FEC do not count as lost).
//! * `MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6` for `0 < R < 100` (G.107 Annex B).

/// G.107's default basic signal-to-noise ratio minus the simultaneous impairments.
const R0: f64 = 93.2;

/// The inputs of one estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditions {
    /// Mouth-to-ear delay, one way (ms).
    pub delay_ms: f64,
    /// Frames that could not be played from a packet (lost or late), percent of all.
    pub loss_percent: f64,
    /// G.107's burst ratio: 1 for random loss, above 1 when losses come in runs.
    pub burst_ratio: f64,
}

/// `Ie` and `Bpl` of a codec by SDP name.
fn codec_factors(codec: &str) -> (f64, f64) {
    match codec.to_ascii_lowercase().as_str() {
        "pcmu" | "pcma" | "g722" | "opus" => (0.0, 25.1),
        // An unknown codec: G.113's G.729A figures, a cautious guess.
        _ => (11.0, 19.0),
    }
}

/// The delay impairment for a one-way delay of `ta` ms.
fn delay_impairment(ta: f64) -> f64 {
    let ta = ta.max(0.0);
    0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 }
}

/// The rating R (0-93.2) for `codec` under `c`.
pub fn rating(codec: &str, c: &Conditions) -> f64 {
    let (ie, bpl) = codec_factors(codec);
    let ppl = if c.loss_percent.is_finite() {
        c.loss_percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let burst = if c.burst_ratio.is_finite() {
        c.burst_ratio.max(1.0)
    } else {
        1.0
    };
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl / burst + bpl);
    let delay = if c.delay_ms.is_finite() { c.delay_ms } else { 0.0 };
    (R0 - delay_impairment(delay) - ie_eff).clamp(0.0, R0)
}

/// G.107 Annex B: MOS (conversational, 1-4.5) from R.
pub fn mos_from_rating(r: f64) -> f64 {
    if !r.is_finite() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

/// The estimated MOS for `codec` under `c`.
pub fn mos(codec: &str, c: &Conditions) -> f64 {
    mos_from_rating(rating(codec, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(delay_ms: f64, loss_percent: f64) -> Conditions {
        Conditions {
            delay_ms,
            loss_percent,
            burst_ratio: 1.0,
        }
    }

    #[test]
    fn g711_clean_short_delay_is_the_narrowband_ceiling() {
        // G.107's default connection: R = 93.2, MOS 4.41.
        let r = rating("PCMU", &cond(0.0, 0.0));
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos_from_rating(r) - 4.41).abs() < 0.01, "{}", mos_from_rating(r));
        // 100 ms one way costs 2.4 points of R.
        assert!((rating("PCMA", &cond(100.0, 0.0)) - 90.8).abs() < 1e-9);
    }

    #[test]
    fn loss_follows_g113_for_g711_with_plc() {
        // Ie,eff at 5 % random loss: 95 * 5 / (5 + 25.1) = 15.78.
        let r = rating("PCMU", &cond(0.0, 5.0));
        assert!((r - (93.2 - 95.0 * 5.0 / 30.1)).abs() < 1e-9, "{r}");
        // More loss, more delay: lower; burstier loss at the same rate: lower.
        let m = |d, l| mos("PCMU", &cond(d, l));
        assert!(m(0.0, 10.0) < m(0.0, 5.0));
        assert!(m(300.0, 5.0) < m(100.0, 5.0));
        let bursty = mos(
            "PCMU",
            &Conditions {
                delay_ms: 0.0,
                loss_percent: 5.0,
                burst_ratio: 3.0,
            },
        );
        assert!(bursty < m(0.0, 5.0));
    }

    #[test]
    fn long_delay_knee_at_177_ms() {
        let below = rating("PCMU", &cond(177.0, 0.0));
        let above = rating("PCMU", &cond(277.0, 0.0));
        // 100 ms more past the knee costs 0.024*100 + 0.11*(277-177.3).
        assert!(
            (below - above - (2.4 + 0.11 * 99.7)).abs() < 0.01,
            "{below} {above}"
        );
    }

    #[test]
    fn mapping_endpoints_and_hostile_numbers() {
        assert_eq!(mos_from_rating(0.0), 1.0);
        assert_eq!(mos_from_rating(-5.0), 1.0);
        assert_eq!(mos_from_rating(120.0), 4.5);
        assert_eq!(mos_from_rating(f64::NAN), 1.0);
        // R = 50: the "nearly all users dissatisfied" point, MOS about 2.6.
        assert!((mos_from_rating(50.0) - 2.58).abs() < 0.01);
        for c in [
            cond(f64::NAN, 0.0),
            cond(0.0, f64::INFINITY),
            cond(-10.0, -3.0),
            cond(1e12, 1e12),
        ] {
            let m = mos("opus", &c);
            assert!((1.0..=4.5).contains(&m), "{c:?} {m}");
        }
    }
}
