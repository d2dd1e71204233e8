//! Where the host keeps each channel's newest voucher: one JSON file per
//! channel, replaced atomically and durably (written, fsync'd, renamed into
//! place, directory fsync'd). The ledger stores a voucher here *before* it
//! counts it, so a crash never loses a payment the host has acknowledged.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kokon_ton::SignedState;
use kokon_wire::billing::VoucherJson;

/// The voucher store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("voucher store {path}: {reason}")]
pub struct StoreError {
    /// The file.
    pub path: String,
    /// What failed.
    pub reason: String,
}

/// One channel's voucher file.
#[derive(Debug, Clone)]
pub struct VoucherStore {
    path: PathBuf,
}

impl VoucherStore {
    /// The store at `path` (created on the first [`VoucherStore::save`]).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The stored voucher, if any (its signature is not checked here).
    pub fn load(&self) -> Result<Option<SignedState>, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let stored: VoucherJson =
                    serde_json::from_slice(&bytes).map_err(|e| self.error(e))?;
                stored.state().map(Some).map_err(|e| self.error(e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Replaces the stored voucher with `voucher`, durably.
    pub fn save(&self, voucher: &SignedState) -> Result<(), StoreError> {
        let path = &self.path;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        let stored = VoucherJson::from(voucher);
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(|e| self.error(e))?;
        f.write_all(&serde_json::to_vec(&stored).map_err(|e| self.error(e))?)
            .and_then(|_| f.sync_all())
            .map_err(|e| self.error(e))?;
        fs::rename(&tmp, path).map_err(|e| self.error(e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::SigningKey;
    use kokon_ton::voucher::{Payee, Payer};

    const CHANNEL: u128 = 77;

    #[test]
    fn vouchers_are_stored_durably_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = VoucherStore::new(dir.path().join("voucher.json"));
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let mut payer = Payer::new(key, CHANNEL, 1_000, None);
        let mut payee = Payee::new(public, CHANNEL, 1_000, 100, store.load().unwrap()).unwrap();
        for _ in 0..5 {
            payee.charge(30);
            let v = payer.pay(30).unwrap();
            assert_eq!(payee.check(&v).unwrap(), 30);
            store.save(&v).unwrap();
            payee.record(v);
        }
        let reopened = Payee::new(public, CHANNEL, 1_000, 100, store.load().unwrap()).unwrap();
        assert_eq!(reopened.paid(), 150);
        assert_eq!(reopened.latest().unwrap().body.seqno, 5);
    }

    #[test]
    fn a_damaged_store_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voucher.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = VoucherStore::new(path.clone()).load().unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            VoucherStore::new(dir.path().join("none.json"))
                .load()
                .unwrap(),
            None
        );
    }
}
