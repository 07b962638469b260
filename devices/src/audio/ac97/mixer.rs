//! The AC'97 codec's registers (NAM, BAR 0): a SigmaTel STAC9700, as QEMU
//! presents it, with variable rate audio. 16-bit registers at even offsets;
//! the primary codec answers at 0x00..0x7f, nothing at the secondary's 0x80..
//!
//! What the codec does that matters here: the rates of the three converters
//! (which pace the bus masters), the output volume and mute (forwarded to the
//! client, which applies them), and the power-down register's ready bits,
//! which drivers poll after a reset.

use tracing::debug;

pub const RESET: u8 = 0x00;
pub const MASTER_VOLUME: u8 = 0x02;
pub const PCM_OUT_VOLUME: u8 = 0x18;
pub const RECORD_SELECT: u8 = 0x1a;
pub const RECORD_GAIN: u8 = 0x1c;
pub const POWERDOWN: u8 = 0x26;
pub const EXT_AUDIO_ID: u8 = 0x28;
pub const EXT_AUDIO_CTRL: u8 = 0x2a;
pub const FRONT_DAC_RATE: u8 = 0x2c;
pub const LR_ADC_RATE: u8 = 0x32;
pub const MIC_ADC_RATE: u8 = 0x34;
pub const VENDOR_ID1: u8 = 0x7c;
pub const VENDOR_ID2: u8 = 0x7e;

/// Extended audio: variable rate PCM (VRA) and mic (VRM).
pub const EXT_VRA: u16 = 1 << 0;
pub const EXT_VRM: u16 = 1 << 3;
/// Power-down status: ADC, DAC, analog mixer and Vref ready.
pub const POWER_READY: u16 = 0x000f;

/// The converters' fixed rate without VRA, and the range with it (AC'97 2.2).
pub const DEFAULT_RATE: u32 = 48_000;
pub const MIN_RATE: u32 = 8_000;
pub const MAX_RATE: u32 = 48_000;

/// The codec's register file (primary codec only).
#[derive(Clone)]
pub struct Mixer {
    regs: [u16; 64],
}

/// What a register write changed, for the device to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixerChange {
    None,
    /// A converter rate or the whole codec (reset).
    Rates,
    /// Output volume or mute.
    Volume,
    /// The record gain or its mute.
    CaptureVolume,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    pub fn new() -> Self {
        let mut m = Mixer { regs: [0; 64] };
        m.reset();
        m
    }

    /// Register reset values (a cold reset, or a write to register 0).
    pub fn reset(&mut self) {
        self.regs = [0; 64];
        self.set(POWERDOWN, POWER_READY);
        self.set(VENDOR_ID1, 0x8384); // "SigmaTel"
        self.set(VENDOR_ID2, 0x7600); // STAC9700
                                      // VRA, VRM, AC'97 2.2 (bits 11:10 = 2).
        self.set(EXT_AUDIO_ID, 0x0809);
        self.set(EXT_AUDIO_CTRL, EXT_VRA | EXT_VRM);
        for r in [FRONT_DAC_RATE, 0x2e, 0x30, LR_ADC_RATE, MIC_ADC_RATE] {
            self.set(r, DEFAULT_RATE as u16);
        }
        // Master muted at 0 dB, PCM out and record gain muted at 0 dB.
        self.set(MASTER_VOLUME, 0x8000);
        self.set(PCM_OUT_VOLUME, 0x8808);
        self.set(RECORD_GAIN, 0x8808 & 0x8f0f);
    }

    fn set(&mut self, reg: u8, v: u16) {
        if let Some(r) = self.regs.get_mut(usize::from(reg >> 1)) {
            *r = v;
        }
    }

    /// The register at `reg` (even offsets; the secondary codec's half reads
    /// as absent, all ones).
    pub fn read(&self, reg: u8) -> u16 {
        if reg & 1 != 0 {
            return 0xffff;
        }
        self.regs
            .get(usize::from(reg >> 1))
            .copied()
            .unwrap_or(0xffff)
    }

    /// A driver's 16-bit write to `reg`.
    pub fn write(&mut self, reg: u8, v: u16) -> MixerChange {
        if reg & 1 != 0 || usize::from(reg >> 1) >= self.regs.len() {
            debug!("ac97: codec write {v:#x} to {reg:#x} ignored");
            return MixerChange::None;
        }
        match reg {
            RESET => {
                self.reset();
                MixerChange::Rates
            }
            MASTER_VOLUME => {
                self.set(reg, v & 0xbf3f);
                MixerChange::Volume
            }
            PCM_OUT_VOLUME => {
                self.set(reg, v & 0x9f1f);
                MixerChange::Volume
            }
            RECORD_GAIN => {
                self.set(reg, v & 0x8f0f);
                MixerChange::CaptureVolume
            }
            RECORD_SELECT => {
                self.set(reg, v & 0x0707);
                MixerChange::None
            }
            POWERDOWN => {
                // The ready bits are status; the rest are power-down requests
                // the codec records (and, being virtual, ignores).
                self.set(reg, (v & !0x800f) | POWER_READY);
                MixerChange::None
            }
            VENDOR_ID1 | VENDOR_ID2 | EXT_AUDIO_ID => MixerChange::None,
            EXT_AUDIO_CTRL => {
                let v = v & (EXT_VRA | EXT_VRM);
                if v & EXT_VRA == 0 {
                    self.set(FRONT_DAC_RATE, DEFAULT_RATE as u16);
                    self.set(LR_ADC_RATE, DEFAULT_RATE as u16);
                }
                if v & EXT_VRM == 0 {
                    self.set(MIC_ADC_RATE, DEFAULT_RATE as u16);
                }
                self.set(reg, v);
                MixerChange::Rates
            }
            FRONT_DAC_RATE | LR_ADC_RATE | MIC_ADC_RATE => {
                let enable = if reg == MIC_ADC_RATE {
                    EXT_VRM
                } else {
                    EXT_VRA
                };
                if self.read(EXT_AUDIO_CTRL) & enable == 0 {
                    debug!("ac97: rate {v} for {reg:#x} without VRA/VRM ignored");
                    return MixerChange::None;
                }
                // A codec rounds to a rate it supports; the driver reads it
                // back (snd_ac97_set_rate) and sees what it got.
                let rate = u32::from(v).clamp(MIN_RATE, MAX_RATE);
                if rate != u32::from(v) {
                    debug!("ac97: rate {v} out of range, using {rate}");
                }
                self.set(reg, rate as u16);
                MixerChange::Rates
            }
            // The rest (tone, beep, line/CD/aux volumes, 3D, general purpose,
            // vendor registers) are features not emulated: they read back what
            // was written, or the reset value for those QEMU keeps read-only.
            0x04 | 0x06 | 0x08 | 0x0a | 0x0c | 0x0e | 0x10 | 0x12 | 0x14 | 0x16 | 0x1e | 0x20
            | 0x22 => MixerChange::None,
            _ => {
                self.set(reg, v);
                MixerChange::None
            }
        }
    }

    /// Rate of the PCM out DAC, PCM in ADC, and mic ADC, in Hz.
    pub fn rate(&self, reg: u8) -> u32 {
        u32::from(self.read(reg)).clamp(MIN_RATE, MAX_RATE)
    }

    /// The capture volume (left, right) on the same linear scale, and the
    /// record gain's mute. The gain (0 to +22.5 dB) only amplifies, which a
    /// scale capped at unity cannot say: unmuted is full scale.
    pub fn capture_volume(&self) -> ([u16; 2], bool) {
        let mute = self.read(RECORD_GAIN) & 0x8000 != 0;
        ([0xffff, 0xffff], mute)
    }

    /// The output volume per channel (left, right) as a linear 0..=0xffff
    /// scale, master and PCM out attenuation combined, and the mute.
    pub fn output_volume(&self) -> ([u16; 2], bool) {
        let master = self.read(MASTER_VOLUME);
        let pcm = self.read(PCM_OUT_VOLUME);
        let mute = (master | pcm) & 0x8000 != 0;
        // Attenuation in 1.5 dB steps, scaled linearly (as QEMU does): master
        // 6 bits, 0 = loudest; PCM out 5 bits with 0 dB at 8 (gain above
        // 0 dB is clipped to it).
        let level = |shift: u16| {
            let m = 0x3f - u32::from((master >> shift) & 0x3f);
            let p = 0x1f - u32::from(((pcm >> shift) & 0x1f).max(8));
            (m * p * 0xffff / (0x3f * 23)) as u16
        };
        ([level(8), level(0)], mute)
    }
}
