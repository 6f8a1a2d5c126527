//! BCD stores: the object/element model on top of a registry hive.
