//! G.729 Annex B SID frames in the Annex A decoder: comfort noise at the
//! signalled level, payload splitting, and no panic on any SID value.

use dataplane::codec::g729::{Decoder, Sid, G729A, L_FRAME};
use dataplane::codec::{Codec, CodecError};

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

fn db(x: f64) -> f64 {
    20.0 * x.max(1e-9).log10()
}

/// SID payload with the given energy index and LSF fields.
fn sid(energy: u8, lsf1: u8) -> [u8; 2] {
    let v: u16 = ((lsf1 as u16 & 0x1f) << 10) | ((energy as u16 & 0x1f) << 1);
    v.to_be_bytes()
}

/// Steady-state output level (dB) of a fresh decoder fed SID frames.
fn cng_level(energy: u8) -> f64 {
    let mut dec = Decoder::new();
    let mut out = vec![0i16; 0];
    let mut frame = [0i16; L_FRAME];
    for _ in 0..60 {
        dec.decode_sid(&Sid::from_rtp(sid(energy, 3)), &mut frame);
        out.extend_from_slice(&frame);
    }
    db(rms(&out[30 * L_FRAME..]))
}

#[test]
fn sid_fields_unpack() {
    let s = Sid::from_rtp([0b1_10101_10, 0b11_10110_0]);
    assert_eq!(s.ma_switch, 1);
    assert_eq!(s.lsf1, 0b10101);
    assert_eq!(s.lsf2, 0b1011);
    assert_eq!(s.energy, 0b10110);
}

#[test]
fn comfort_noise_follows_signalled_energy() {
    let mut levels = Vec::new();
    for e in [4u8, 10, 16, 22, 28] {
        let l = cng_level(e);
        let target = db(Sid::from_rtp(sid(e, 3)).excitation_rms() as f64);
        println!("SID energy {e:2}: excitation target {target:6.1} dB, output {l:6.1} dB");
        // The SID energy is that of the LPC residual (the excitation); the
        // output adds the synthesis filter's gain (a few to ~15 dB for the
        // decoder's reset spectrum), never less than the excitation.
        let gain = l - target;
        assert!(
            (-3.0..20.0).contains(&gain),
            "index {e}: {l} dB vs {target} dB"
        );
        levels.push(l);
    }
    // 6 index steps are 12 dB of signalled energy.
    for w in levels.windows(2) {
        let step = w[1] - w[0];
        assert!((6.0..18.0).contains(&step), "level step {step} dB");
    }
}

#[test]
fn every_sid_value_decodes_without_panic() {
    let mut c = G729A::new();
    let mut out = [0i16; L_FRAME];
    for v in 0..=u16::MAX {
        let n = c
            .decode(&v.to_be_bytes(), &mut out)
            .expect("2-byte SID payload");
        assert_eq!(n, L_FRAME);
    }
}

#[test]
fn payload_split_speech_frames_and_trailing_sid() {
    let mut c = G729A::new();
    let pcm: Vec<i16> = (0..2 * L_FRAME)
        .map(|i| ((i as f64 * 0.3).sin() * 6000.0) as i16)
        .collect();
    let mut bits = [0u8; 20];
    assert_eq!(c.encode(&pcm, &mut bits).expect("encode"), 20);
    let mut payload = bits.to_vec();
    payload.extend_from_slice(&sid(20, 7));
    let mut out = vec![0i16; 3 * L_FRAME];
    let mut dec = Decoder::new();
    assert_eq!(
        dec.decode_rtp_payload(&payload, &mut out).expect("decode"),
        3 * L_FRAME
    );
    assert!(dec.in_comfort_noise());
    assert!(rms(&out[2 * L_FRAME..]) > 10.0, "SID frame must give noise");
    // Missing packets after a SID continue the comfort noise.
    let mut more = [0i16; L_FRAME];
    assert_eq!(c.conceal(&mut more).expect("conceal"), L_FRAME);
    let mut dec2 = dec.clone();
    let mut f = [0i16; L_FRAME];
    dec2.decode_frame(None, &mut f);
    assert!(rms(&f) > 10.0 && dec2.in_comfort_noise());
    // A speech frame ends the silence period.
    dec2.decode_rtp_payload(&bits[..10], &mut f)
        .expect("speech");
    assert!(!dec2.in_comfort_noise());

    // Bad lengths and short outputs are errors, not panics.
    assert!(matches!(
        dec.decode_rtp_payload(&[0u8; 5], &mut out),
        Err(CodecError::BadPayloadLength { len: 5, .. })
    ));
    assert!(matches!(
        dec.decode_rtp_payload(&payload, &mut out[..100]),
        Err(CodecError::OutputTooSmall { need: 240, .. })
    ));
}
