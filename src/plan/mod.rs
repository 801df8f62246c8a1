//! The plan as data: what would change, where and why.
