//! Shared pieces of the example programs (none yet).
