//! Whether this browser runs WebAssembly SIMD, asked before the worker (built with
//! `simd128`) is started, so a browser without it gets a message instead of a blank page;
//! and whether it runs relaxed SIMD, which decides which of the two worker builds starts
//! (a module with relaxed instructions does not even validate elsewhere).

/// A minimal module whose one function returns `i8x16.popcnt(i8x16.splat(0))`: it
/// validates only where SIMD is supported.
const SIMD_PROBE: [u8; 31] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, 0x0a, 0x01, 0x08, 0x00, // code: one body of 8 bytes, no locals
    0x41, 0x00, // i32.const 0
    0xfd, 0x0f, // i8x16.splat
    0xfd, 0x62, // i8x16.popcnt
    0x0b, // end
];

/// Whether WebAssembly SIMD is available.
pub fn supported() -> bool {
    let bytes = js_sys::Uint8Array::from(&SIMD_PROBE[..]);
    js_sys::WebAssembly::validate(&bytes).unwrap_or(false)
}

/// A minimal module whose one function returns
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` of three `i8x16.splat(0)`: it validates only
/// where relaxed SIMD is supported.
const RELAXED_PROBE: [u8; 40] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, 0x13, 0x01, 0x11, 0x00, // code: one body of 17 bytes, no locals
    0x41, 0x00, 0xfd, 0x0f, // i32.const 0, i8x16.splat
    0x41, 0x00, 0xfd, 0x0f, // the same
    0x41, 0x00, 0xfd, 0x0f, // the same
    0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
    0x0b, // end
];

/// Whether WebAssembly relaxed SIMD is available.
pub fn relaxed_supported() -> bool {
    let bytes = js_sys::Uint8Array::from(&RELAXED_PROBE[..]);
    js_sys::WebAssembly::validate(&bytes).unwrap_or(false)
}
