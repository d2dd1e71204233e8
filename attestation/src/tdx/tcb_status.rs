//! The TCB status Intel's TCB info and QE identity assign to a level, and
//! how statuses combine. A leaf: the collateral parser and the TCB appraisal
//! both use it, and it uses neither (as `dcap-qvl` keeps its TCB info a leaf).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The appraisal of a TCB level, as Intel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// Patched, but software hardening is needed against listed advisories.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// A newer TCB exists; the platform is behind.
    OutOfDate,
    /// Behind, and its configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// The TCB is revoked: its keys may be compromised.
    Revoked,
    /// The TD runs on an updated module but was launched on an old one: relaunch it.
    TDRelaunchAdvised,
    /// As above, and the configuration needs changing.
    TDRelaunchAdvisedConfigurationNeeded,
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl TcbStatus {
    /// Combines this status with a component's (QE, TDX module), as Intel's QVL does.
    pub fn converge(self, component: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (component, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            _ => self,
        }
    }

    /// Combines a TD 1.5's launch status with its current one (QVL's `checkForRelaunch`).
    pub fn check_for_relaunch(self, current: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        let config = |s| {
            matches!(
                s,
                ConfigurationNeeded
                    | OutOfDateConfigurationNeeded
                    | ConfigurationAndSWHardeningNeeded
                    | TDRelaunchAdvisedConfigurationNeeded
            )
        };
        match (self, current) {
            (
                OutOfDate | OutOfDateConfigurationNeeded,
                UpToDate
                | SWHardeningNeeded
                | ConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded,
            ) => {
                if config(self) || config(current) {
                    TDRelaunchAdvisedConfigurationNeeded
                } else {
                    TDRelaunchAdvised
                }
            }
            _ => self,
        }
    }
}
