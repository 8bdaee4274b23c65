//! The sans-IO core: rooms, participants, tracks, subscriptions, the routing policy and the
//! forwarder. Nothing here knows sockets, threads, str0m or GStreamer; time is an input.

pub mod events;
mod fanout;
pub mod forwarder;
mod mcu;
pub mod mixing;
pub mod participant;
pub mod room;
pub mod routing;
pub mod stats;
pub mod view;

pub use events::{FinishReason, LeaveReason, RoomEvent};
pub use fanout::Network;
pub use mixing::{MixerFactory, MixerSettings};
pub use participant::MediaGrants;
pub use room::{Joining, KernelPath, Room, RoomConfig, RoomError};
pub use routing::{AudioPreference, Route, VideoPreference};
