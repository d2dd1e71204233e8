//! The demo's payment channel: opened on a local TON sandbox (the real TVM
//! through `demo/ton-sandbox`), paid by vouchers after each verified
//! receipt, settled by a cooperative close.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use kokon_billing::SignedReceipt;
use kokon_client::Client;
use kokon_ton::voucher::Payer;
use kokon_ton::ChannelParams;
use kokon_ton_sandbox::{LocalChain, Settlement};

pub use kokon_ton_sandbox::{DEMO_DEPOSIT, DEMO_PRICE};

/// The demo's price per prompt token, nanotons (within the dev policy's cap).
pub const DEMO_PROMPT_TOKEN_PRICE: u128 = 1_000;
/// The demo's price per completion token, nanotons (within the dev policy's cap).
pub const DEMO_COMPLETION_TOKEN_PRICE: u128 = 3_000;

fn random_key() -> anyhow::Result<SigningKey> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A channel between the demo's client and host.
pub struct DemoChannel {
    chain: LocalChain,
    /// Its parameters.
    pub params: ChannelParams,
    /// Its address on the sandbox.
    pub address: String,
    host_key: SigningKey,
    /// The client's side.
    pub payer: Payer,
    client_key: SigningKey,
    /// Receipts paid.
    pub receipts: u64,
}

impl DemoChannel {
    /// Starts the sandbox and opens a channel funded by the client.
    pub fn open(bridge: &Path) -> anyhow::Result<Self> {
        let now = kokon_client::unix_now();
        let mut chain = LocalChain::start(bridge, now)?;
        let client_key = random_key()?;
        let host_key = random_key()?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
        let params =
            chain.channel_params(u128::from_be_bytes(id) >> 1 | 1, &client_key, &host_key)?;
        let address = chain.open_channel(&params, &client_key, DEMO_DEPOSIT)?;
        let payer = Payer::new(client_key.clone(), params.channel_id, DEMO_DEPOSIT, None);
        Ok(Self {
            chain,
            params,
            address,
            host_key,
            payer,
            client_key,
            receipts: 0,
        })
    }

    /// The client's channel key (signs vouchers and payer proofs).
    pub fn client_key(&self) -> SigningKey {
        self.client_key.clone()
    }

    /// Writes the host's channels file into `dir`.
    pub fn channels_file(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("channels.toml");
        std::fs::write(
            &path,
            format!(
                "[[channel]]\nid = \"{}\"\nclient_key = \"{}\"\ndeposit = \"{}\"\ncredit_limit = \"{}\"\n",
                self.params.channel_id,
                hex::encode(self.params.key_a),
                DEMO_DEPOSIT,
                3 * DEMO_PRICE
            ),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Pays for a verified receipt: signs the next voucher and hands it to the host.
    pub async fn pay(&mut self, client: &Client, receipt: &SignedReceipt) -> anyhow::Result<u128> {
        let voucher = self.payer.pay(receipt.receipt.amount)?;
        let paid = client.pay(&voucher).await?;
        self.receipts += 1;
        Ok(paid)
    }

    /// Closes the channel cooperatively on what the vouchers say.
    pub fn settle(&mut self) -> anyhow::Result<Settlement> {
        let state = self.payer.state();
        self.chain.close_cooperatively(
            &self.address,
            &self.params,
            &self.client_key,
            &self.host_key,
            state.sent,
            DEMO_DEPOSIT,
            state.seqno.max(1),
        )
    }
}
