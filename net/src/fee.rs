//! What a gateway pays for a segment, as go-livepeer's gateway reckons it (§2.5.6), and what
//! it asks orchestrators for. Shared by the gateway and the signer that pays for gateways.

use std::time::Duration;

use lpe_pm::{BigInt, BigRational};

use crate::proto::{Capabilities, VideoProfile, capability};

/// What the gateway asks orchestrators for: H.264 in MPEG-TS, with an auth token.
pub fn transcoding_capabilities() -> Capabilities {
    Capabilities {
        constraints: Some(Default::default()),
        ..Capabilities::from_ids(&[capability::H264, capability::MPEGTS, capability::AUTH_TOKEN])
    }
}

/// go-livepeer's fee margin: the binary double 1.02 (§2.12), exactly.
fn fee_margin() -> BigRational {
    BigRational::new(
        BigInt::from(2_296_835_809_958_953u64),
        BigInt::from(2_251_799_813_685_248u64),
    )
}

/// The fee go-livepeer's gateway estimates for a segment (§2.5.6):
/// `Σ w × h × ceil(fps / fpsDen) × ceil(duration_s) × 1.02 × price`.
pub fn estimated_fee(
    profiles: &[VideoProfile],
    duration: Duration,
    price: &BigRational,
) -> BigRational {
    let seconds = duration.as_millis().div_ceil(1000).max(1);
    let pixels: u128 = profiles
        .iter()
        .map(|p| {
            let fps = if p.fps == 0 { 60 } else { p.fps };
            let den = p.fps_den.max(1);
            let per_second = u128::from(fps.div_ceil(den));
            u128::from(p.width.max(0) as u32) * u128::from(p.height.max(0) as u32) * per_second
        })
        .sum::<u128>()
        * seconds;
    BigRational::from_integer(BigInt::from(pixels)) * fee_margin() * price
}

/// The most a gateway with `max_price_per_unit` wei per `pixels_per_unit` pixels pays; `None`
/// when 0 (any price).
pub fn max_price(max_price_per_unit: u64, pixels_per_unit: u64) -> Option<BigRational> {
    (max_price_per_unit > 0).then(|| {
        BigRational::new(
            BigInt::from(max_price_per_unit),
            BigInt::from(pixels_per_unit.max(1)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(w: i32, h: i32, fps: u32, den: u32) -> VideoProfile {
        VideoProfile {
            width: w,
            height: h,
            fps,
            fps_den: den,
            ..Default::default()
        }
    }

    #[test]
    fn the_fee_is_go_livepeers_estimate() {
        let price = BigRational::from_integer(3.into());
        // 1280×720×30×2 + 640×360×ceil(30000/1001 = 29.97 → 30)×2, × 1.02 (the double) × 3.
        let fee = estimated_fee(
            &[profile(1280, 720, 30, 1), profile(640, 360, 30000, 1001)],
            Duration::from_millis(1500),
            &price,
        );
        let pixels = 1280 * 720 * 30 * 2 + 640 * 360 * 30 * 2;
        assert_eq!(
            fee,
            BigRational::from_integer(BigInt::from(pixels * 3)) * fee_margin()
        );
        assert!(fee_margin() > BigRational::new(102.into(), 100.into()));
        // fps 0 counts as 60.
        let fee = estimated_fee(&[profile(2, 2, 0, 0)], Duration::from_secs(1), &price);
        assert_eq!(
            fee,
            BigRational::from_integer(BigInt::from(2 * 2 * 60 * 3)) * fee_margin()
        );
    }
}
