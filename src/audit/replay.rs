//! Replay (written next).
