//! `ufd provision --plan`: the equivalent Windows procedure. Being written: see issue #6.
