//! The host-only part of judging an image: facts only a host-side reader has (the VHD file's
//! NTFS attributes, from [`crate::ntfsvol`]) turned into the problems a verdict quotes.
//!
//! Every rule's judge lives in `ufd_formats::policy` (one set for `ufd inspect`,
//! `ufd check-device` and the guest probes); IMG-GENERALIZED, IMG-LANGPACKS and the BCD
//! locales they need are `ufd_formats::policy::image`. What stays here depends on this
//! crate's NTFS reader and so cannot move into the `no_std` library.

use crate::ntfsvol::DataFacts;

/// The VHD file's placement on the UFD's NTFS, for IMG-VHD-FIXED: native VHD boot reads the
/// file through its data runs before any file system driver runs, so every byte must be
/// allocated and written — not sparse, not compressed or encrypted, valid data length = size.
pub fn placement_problems(facts: &DataFacts) -> Vec<String> {
    facts.irregularities()
}
