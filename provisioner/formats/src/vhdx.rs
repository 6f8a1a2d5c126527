//! VHDX (Hyper-V Server 2012's native-boot container). Being written: see issue #7.
