//! Switchboard's MCU, the room's audio mixer and video compositor (the driver's `Mcu`). See `mixer.rs`.

#![forbid(unsafe_code)]

mod codec;
pub mod compositor;
mod conceal;
pub mod g711;
pub mod gst_codec;
mod jitter;
mod mixer;
pub mod opus_codec;
pub mod resample;
mod speakers;
#[cfg(test)]
mod test_util;

pub use mixer::{spec, Mixer};
