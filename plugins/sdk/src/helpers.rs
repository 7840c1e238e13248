//! Helpers shared by rules, the counterpart of Panther's `global_helpers`.

pub mod databricks;
