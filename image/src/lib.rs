//! The worker VM's guest image (to be written): `kokon image build`.
