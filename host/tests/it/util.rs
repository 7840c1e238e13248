//! Shared helpers: where the built components are, and how to run the CLI.
