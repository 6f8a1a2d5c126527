//! # ufd-device
//!
//! Real targets (issue #6): being written.
