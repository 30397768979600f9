//! C ABI over the line echo canceller for the anchors
//! benchmark (`/work/shared/anchors/codecs`, backend `ext`):
//!
//! ```c
//! void *ext_ec_create(int taps, int nlp);
//! int16_t ext_ec_update(void *, int16_t tx, int16_t rx);
//! void ext_ec_free(void *);
//! ```
//!
//! Build with `cargo build -p ec-ffi --release` and pass
//! `target/release/libec_ffi.a` as `EXT_EC_OBJS` (link also `-lpthread -ldl`
//! if the linker asks). Bench-only: the product links the Rust API.
//!
//! `ext_ec_create` builds the default, frequency-domain canceller
//! ([`dataplane::dsp::ec_fdaf`]); `TANDEM_EC=time` in the environment makes
//! it build the time-domain one ([`dataplane::dsp::ec`]) instead, so both
//! run against speexdsp in one binary.
#![allow(unsafe_code)]

use dataplane::dsp::ec::EchoCanceller;
use dataplane::dsp::ec_fdaf::FdafEchoCanceller;

/// One of the two cancellers behind the C handle.
pub enum Canceller {
    /// [`EchoCanceller`] (`TANDEM_EC=time`).
    TimeDomain(Box<EchoCanceller>),
    /// [`FdafEchoCanceller`] (the default).
    Fdaf(Box<FdafEchoCanceller>),
}

/// A canceller of `taps` taps (clamped to 256..=1024), NLP on if `nlp != 0`.
/// Free it with [`ext_ec_free`].
#[no_mangle]
pub extern "C" fn ext_ec_create(taps: i32, nlp: i32) -> *mut Canceller {
    let taps = usize::try_from(taps).unwrap_or(0);
    let ec = if std::env::var("TANDEM_EC").is_ok_and(|v| v == "time") {
        let mut ec = EchoCanceller::new(taps);
        ec.set_nlp(nlp != 0);
        Canceller::TimeDomain(Box::new(ec))
    } else {
        let mut ec = FdafEchoCanceller::new(taps);
        ec.set_nlp(nlp != 0);
        Canceller::Fdaf(Box::new(ec))
    };
    Box::into_raw(Box::new(ec))
}

/// One sample: `tx` sent to the line (far, Rin), `rx` received (near, Sin);
/// returns Sout. A null handle passes `rx` through.
///
/// # Safety
/// `ec` is null or a live pointer from [`ext_ec_create`], not used
/// concurrently.
#[no_mangle]
pub unsafe extern "C" fn ext_ec_update(ec: *mut Canceller, tx: i16, rx: i16) -> i16 {
    // SAFETY: the caller passes null or a pointer from `ext_ec_create` that
    // has not been freed, with no other reference alive during the call.
    let Some(ec) = (unsafe { ec.as_mut() }) else {
        return rx;
    };
    let mut out = [0i16];
    match ec {
        Canceller::TimeDomain(ec) => ec.process(&[tx], &[rx], &mut out),
        Canceller::Fdaf(ec) => out[0] = ec.process_sample(tx, rx),
    }
    out[0]
}

/// Free a canceller from [`ext_ec_create`] (null is ignored).
///
/// # Safety
/// `ec` is null or a pointer from [`ext_ec_create`] not freed before.
#[no_mangle]
pub unsafe extern "C" fn ext_ec_free(ec: *mut Canceller) {
    if !ec.is_null() {
        // SAFETY: per the contract, `ec` came from `Box::into_raw` in
        // `ext_ec_create` and is freed once.
        drop(unsafe { Box::from_raw(ec) });
    }
}
