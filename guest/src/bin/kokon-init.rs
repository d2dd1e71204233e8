//! The guest's PID 1 (to be written).
fn main() {}
