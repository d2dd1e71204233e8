//! The worker VM's init (to be written).
