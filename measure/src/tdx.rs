//! TDX MRTD and RTMRs (to be written).
