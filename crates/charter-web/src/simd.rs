//! Whether this browser runs WebAssembly SIMD, asked before the worker (built with
//! `simd128`) is started, so a browser without it gets a message instead of a blank page.

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
