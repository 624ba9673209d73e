//! Wire types shared by the sprited daemon, the `sprite` CLI, the Rust SDK and
//! the in-sprite agent.

pub mod agent;
pub mod checkpoint;
pub mod duration;
pub mod error;
pub mod exec;
pub mod fs;
pub mod name;
pub mod organization;
pub mod policy;
pub mod port;
pub mod service;
pub mod sprite;
pub mod task;
pub mod token;
pub mod usage;

/// Value of the `Sprite-Version` response header. The Go SDK picks its session
/// attach form from it; anything newer than `0.0.1-rc29` selects the modern one.
pub const SPRITE_VERSION: &str = "0.1.0";
