//! Switchboard's audio MCU: a driver the room treats like a participant. See `mixer.rs`.

mod codec;
pub mod g711;
pub mod gst_codec;
mod jitter;
mod mixer;
pub mod resample;
mod speakers;

pub use mixer::{spec, MixerDriver};
