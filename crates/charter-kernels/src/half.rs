//! IEEE half precision and bfloat16, converted by bit manipulation so that every build
//! (scalar, SIMD128, AVX2 with F16C) gets the same bits.

/// `f16` bits to `f32`, exact for every value (zeros, subnormals, infinities, NaN).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let mant = u32::from(h & 0x3ff);
    if exp == 0x1f {
        // Infinity or NaN: keep the payload's top bits.
        return f32::from_bits(sign | 0x7f80_0000 | (mant << 13));
    }
    // Finite: move the exponent and mantissa into place and rescale by 2^112, which is
    // exact and also normalizes subnormal halves.
    f32::from_bits(sign | (u32::from(h & 0x7fff) << 13)) * F16_RESCALE
}

/// `f16` bits to `f32` the way the SIMD kernels convert block scales: exact for every
/// finite half (subnormals included), but infinities and NaN come out finite. The dot
/// products use it in every build, so scalar and SIMD agree bit for bit.
#[inline]
pub fn f16_to_f32_finite(h: u16) -> f32 {
    f32::from_bits((u32::from(h & 0x8000) << 16) | (u32::from(h & 0x7fff) << 13)) * F16_RESCALE
}

/// Reads the little-endian `f16` at `bytes[at..at + 2]` with [`f16_to_f32_finite`].
#[inline]
pub fn read_f16_finite(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32_finite(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// `2^112`: the factor between an `f16` exponent field read as an `f32` one and its value.
pub const F16_RESCALE: f32 = 5.192_297e33;

/// `f32` to `f16` bits, rounding to nearest even; values beyond the largest half
/// become infinities, as IEEE conversion does.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        // NaN: a quiet NaN with the top payload bits.
        return sign | 0x7e00 | ((abs >> 13) & 0x3ff) as u16;
    }
    if abs >= 0x4780_0000 {
        // 65520 and above round to infinity.
        return sign | 0x7c00;
    }
    if abs < 0x3880_0000 {
        // Below the smallest normal half: a subnormal or zero. Adding 0.5 moves the
        // mantissa bits we keep to the bottom, and the FPU rounds to nearest even.
        let v = f32::from_bits(abs) + 0.5;
        return sign | (v.to_bits() - 0x3f00_0000) as u16;
    }
    // Normal: rebias the exponent and round the 13 dropped bits to nearest even.
    let mant_odd = (abs >> 13) & 1;
    let rounded = abs.wrapping_add(0xc800_0fff).wrapping_add(mant_odd);
    sign | (rounded >> 13) as u16
}

/// `bf16` bits to `f32` (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Reads the little-endian `f16` at `bytes[at..at + 2]`.
#[inline]
pub fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan());
            } else {
                assert_eq!(f32_to_f16(x), h, "{h:#06x} -> {x}");
            }
        }
    }

    #[test]
    fn the_kernels_conversion_is_exact_for_finite_halves() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_finite() {
                assert_eq!(f16_to_f32_finite(h).to_bits(), x.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(1e-8), 0x0000);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // Halfway between 1.0 (0x3c00) and the next half (0x3c01): goes to the even one.
        let half_ulp = 2f32.powi(-11);
        assert_eq!(f32_to_f16(1.0 + half_ulp), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * half_ulp), 0x3c02);
        assert_eq!(f32_to_f16(1.0 + 1.5 * half_ulp), 0x3c01);
        // Subnormal halfway: 1.5 × the smallest subnormal goes to 2 ×.
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-24)), 0x0002);
        assert_eq!(f32_to_f16(0.5 * 2f32.powi(-24)), 0x0000);
    }
}
