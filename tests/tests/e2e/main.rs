//! End-to-end suites against real engines; shared helpers live in the `lazaret-tests` library.

mod harness;
mod inventory;
mod reconnect;
