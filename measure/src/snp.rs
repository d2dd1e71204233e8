//! SEV-SNP launch digest (to be written).
