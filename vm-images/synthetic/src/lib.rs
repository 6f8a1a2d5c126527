//! The built-in synthetic Windows-shaped images.
